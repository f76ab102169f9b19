#include "data/synth.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/hash.h"
#include "data/tokenizer.h"

namespace rt {

namespace {

// A counter-based stream of random numbers.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(splitmix64(seed)) {}
  uint64_t next() { return splitmix64(state_++); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
  double unit() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Filler in a lexicon of its own per document: sentences of 4 to 9 words drawn from 12
// random lowercase words. The words of one document recur, so most of its filler can only be
// predicted by copying from earlier in the same document: the in-context copying (induction)
// that retrieving the key needs is rewarded on every word, not only on the 5 key digits. A
// fixed filler (Mohtashami & Jaggi's "The grass is green...") is learned by heart instead and
// leaves the key as the only retrieval signal in thousands of tokens. No digits, no ':'.
std::string filler(int64_t n, Random& rng) {
  std::vector<std::string> lexicon(12);
  for (std::string& word : lexicon) {
    const int64_t letters = 2 + rng.below(6);
    for (int64_t i = 0; i < letters; ++i) word += static_cast<char>('a' + rng.below(26));
  }
  std::string s;
  while (static_cast<int64_t>(s.size()) < n) {
    const int64_t words = 4 + rng.below(6);
    for (int64_t w = 0; w < words; ++w)
      s += (w ? " " : "") + lexicon[static_cast<size_t>(rng.below(12))];
    s += ". ";
  }
  s.resize(static_cast<size_t>(n));
  return s;
}

SynthDocument finish(const std::string& text, const std::vector<int64_t>& answers) {
  SynthDocument d;
  ByteTokenizer::encode(text, d.tokens);
  d.tokens.push_back(ByteTokenizer::kEos);
  d.answers = answers;
  return d;
}

}  // namespace

SynthDocument passkey_document(int64_t length, double depth, uint64_t seed, int64_t questions) {
  RT_CHECK(length >= kSynthMinLength && questions >= 1, "passkey document of ", length,
           " tokens and ", questions, " questions");
  Random rng(seed);
  std::string key;
  for (int i = 0; i < 5; ++i) key += static_cast<char>('0' + rng.below(10));
  // ':' comes right before the key and nowhere else (the filler has no ':' and no digits), so
  // one byte finds it. The key is said once: a copy at a fixed offset would be learned as a
  // positional shortcut instead of retrieval.
  const std::string needle = " The pass key is:" + key + ". Remember it. ";
  const std::string question = " What is the pass key? The pass key is:" + key + ".";
  // Questions beyond what the filler has room for are not asked (short documents).
  int64_t asked = 1;
  while (asked < questions &&
         length - 1 - static_cast<int64_t>(needle.size() + (asked + 1) * question.size()) >= 64)
    ++asked;
  const int64_t room = length - 1 - static_cast<int64_t>(needle.size() + asked * question.size());
  std::string text = filler(room, rng);
  // Moved back to the end of a sentence when there is one close before.
  auto sentence_start = [&](size_t at) {
    const size_t end = text.rfind(". ", at);
    return end != std::string::npos && at - end < 40 ? end + 1 : at;
  };
  // The key goes at the depth; the extra questions at random points after it.
  const size_t key_at = sentence_start(
      static_cast<size_t>(std::llround(std::clamp(depth, 0.0, 1.0) * static_cast<double>(room))));
  std::vector<size_t> question_at;
  for (int64_t q = 1; q < asked; ++q)
    question_at.push_back(sentence_start(
        key_at + static_cast<size_t>(rng.unit() * static_cast<double>(text.size() - key_at))));
  std::sort(question_at.rbegin(), question_at.rend());  // insert from the back: offsets hold
  for (size_t at : question_at) text.insert(std::max(at, key_at), question);
  text.insert(key_at, needle);
  text += question;
  std::vector<int64_t> answers;  // the five digits before "." of every question
  for (size_t at = text.find(question); at != std::string::npos; at = text.find(question, at + 1)) {
    const int64_t first = static_cast<int64_t>(at + question.size()) - 6;
    for (int64_t i = 0; i < 5; ++i) answers.push_back(first + i);
  }
  return finish(text, answers);
}

SynthDocument mqar_document(int64_t length, uint64_t seed) {
  RT_CHECK(length >= kSynthMinLength, "mqar document of ", length, " tokens");
  Random rng(seed);
  // "abc=17 " (7 bytes) per pair, "abc?17 " per query; half the pairs are queried.
  const int64_t pairs = std::max<int64_t>(4, (length - 12) / 11);
  std::vector<std::string> keys, values;
  while (static_cast<int64_t>(keys.size()) < pairs) {
    std::string k;
    for (int i = 0; i < 3; ++i) k += static_cast<char>('a' + rng.below(26));
    if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
    keys.push_back(k);
    values.push_back(std::string(1, static_cast<char>('0' + rng.below(10))) +
                     static_cast<char>('0' + rng.below(10)));
  }
  std::string text = "kv: ";
  for (int64_t i = 0; i < pairs; ++i) text += keys[i] + "=" + values[i] + " ";
  text += "| ";
  std::vector<int64_t> answers;
  for (int64_t q = 0; q < pairs / 2; ++q) {
    const int64_t i = rng.below(pairs);
    if (static_cast<int64_t>(text.size() + 7) > length - 1) break;
    text += keys[i] + "?";
    answers.push_back(static_cast<int64_t>(text.size()));
    answers.push_back(static_cast<int64_t>(text.size()) + 1);
    text += values[i] + " ";
  }
  if (static_cast<int64_t>(text.size()) > length - 1) text.resize(static_cast<size_t>(length - 1));
  text += std::string(static_cast<size_t>(length - 1 - static_cast<int64_t>(text.size())), '.');
  return finish(text, answers);
}

SynthDocument tokenized_document(const std::function<SynthDocument(int64_t bytes)>& make,
                                 int64_t length, const TextTokenizer& tokenizer) {
  const int64_t room = length - 1;  // <eos> last
  SynthDocument best;
  std::vector<int32_t> ids;
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  double bytes = 4.0 * static_cast<double>(length);  // a first guess of 4 bytes a token
  for (int attempt = 0; attempt < 8 && static_cast<int64_t>(best.tokens.size()) < room; ++attempt) {
    const int64_t b = std::max<int64_t>(kSynthMinLength, std::llround(bytes));
    const SynthDocument d = make(b);
    const std::string text(d.tokens.begin(), d.tokens.end() - 1);  // bytes, without <eos>
    tokenizer.encode_spans(text, ids, spans);
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n <= room && n > static_cast<int64_t>(best.tokens.size())) {
      best.tokens = ids;
      best.answers.clear();
      size_t a = 0;  // answers are ascending byte offsets, tokens ascending spans
      for (size_t j = 0; j < spans.size() && a < d.answers.size(); ++j) {
        if (spans[j].second <= d.answers[a]) continue;
        if (spans[j].first <= d.answers[a]) best.answers.push_back(static_cast<int64_t>(j));
        while (a < d.answers.size() && d.answers[a] < spans[j].second) ++a;
      }
    }
    if (n == room || (b == kSynthMinLength && n > room)) break;
    // The measured bytes per token; a little under the target when over it.
    bytes = static_cast<double>(b) * static_cast<double>(room) / static_cast<double>(n) *
            (n > room ? 0.99 : 1.0);
  }
  if (best.tokens.empty())
    throw UserError(cat("a task document of ", length, " tokens: even ", kSynthMinLength,
                        " bytes of it take more tokens; expected a longer length"));
  const int64_t missing = room - static_cast<int64_t>(best.tokens.size());
  best.tokens.insert(best.tokens.begin(), static_cast<size_t>(missing), best.tokens.front());
  for (int64_t& a : best.answers) a += missing;
  best.tokens.push_back(static_cast<int32_t>(tokenizer.info().eos_id));
  return best;
}

SynthDocument task_document(const std::string& task, int64_t length, double depth, uint64_t seed,
                            int64_t questions, const TextTokenizer* tokenizer) {
  const auto make = [&](int64_t n) {
    return task == "passkey" ? passkey_document(n, depth, seed, questions) : mqar_document(n, seed);
  };
  return tokenizer ? tokenized_document(make, length, *tokenizer) : make(length);
}

ImportStats synth_corpus(const SynthSpec& spec, const std::string& out_path) {
  if (spec.task != "passkey" && spec.task != "mqar")
    throw UserError(cat("data synth: --task '", spec.task, "' is not one of passkey, mqar"));
  if (spec.questions < 1 || spec.questions > 64)
    throw UserError(cat("data synth: --questions ", spec.questions, "; expected 1 to 64"));
  if (spec.documents < 1)
    throw UserError(cat("data synth: --docs ", spec.documents, "; expected at least 1"));
  // A document is built in memory: 2^36 tokens (a few hundred GiB of text) is beyond any use.
  if (spec.min_len < kSynthMinLength || spec.max_len < spec.min_len ||
      spec.max_len > (int64_t(1) << 36))
    throw UserError(cat("data synth: lengths ", spec.min_len, "..", spec.max_len, "; expected ",
                        kSynthMinLength, " <= --min-len <= --max-len <= 2^36"));
  if (spec.length_dist != "log_uniform" && spec.length_dist != "uniform" &&
      spec.length_dist != "fixed" && spec.length_dist != "pow2")
    throw UserError(cat("data synth: --length-dist '", spec.length_dist,
                        "' is not one of log_uniform, uniform, fixed, pow2"));
  // pow2: 2^k (input, target) pairs, 2^k a power of two in [min_len, max_len].
  int lo2 = 0, hi2 = -1;
  while ((int64_t{1} << lo2) < spec.min_len) ++lo2;
  while ((int64_t{1} << (hi2 + 1)) <= spec.max_len) ++hi2;
  if (spec.length_dist == "pow2" && lo2 > hi2)
    throw UserError(cat("data synth: --length-dist pow2: no power of two in ", spec.min_len, "..",
                        spec.max_len));
  const std::unique_ptr<TextTokenizer> tokenizer =
      spec.tokenizer.empty() ? nullptr : TextTokenizer::sentencepiece(spec.tokenizer);
  CorpusWriter writer(out_path, tokenizer ? tokenizer->info() : TokenizerInfo{});
  Random rng(spec.seed ^ 0x9e3779b97f4a7c15ull);
  for (int64_t d = 0; d < spec.documents; ++d) {
    const double u = rng.unit();
    int64_t length = spec.max_len;
    if (spec.length_dist == "uniform")
      length = spec.min_len +
               static_cast<int64_t>(u * static_cast<double>(spec.max_len - spec.min_len + 1));
    else if (spec.length_dist == "log_uniform")
      length = static_cast<int64_t>(
          std::exp(std::log(static_cast<double>(spec.min_len)) +
                   u * std::log(static_cast<double>(spec.max_len) / spec.min_len)));
    length = std::clamp(length, spec.min_len, spec.max_len);
    if (spec.length_dist == "pow2") {
      // k with odds 2^-k: every bucket gets the same expected number of tokens, so dataset
      // decomposition spends as many steps on short sequences as on long ones.
      const double total = 2.0 - std::ldexp(1.0, lo2 - hi2);  // sum of 2^(lo2-k), k = lo2..hi2
      double below = 0.0;
      int k = lo2;
      while (k < hi2 && u * total > (below += std::ldexp(1.0, lo2 - k))) ++k;
      length = (int64_t{1} << k) + 1;
    }
    const uint64_t doc_seed = rng.next();
    // Drawn only when asked for, so that corpora of one question stay what they were.
    const int64_t questions =
        spec.questions > 1 ? 1 + static_cast<int64_t>(rng.below(spec.questions)) : 1;
    const double depth = spec.task == "passkey" ? rng.unit() : 0.0;
    writer.add(
        task_document(spec.task, length, depth, doc_seed, questions, tokenizer.get()).tokens);
  }
  return writer.finish();
}

}  // namespace rt
