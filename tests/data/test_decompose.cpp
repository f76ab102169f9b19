// Dataset decomposition and its curriculum, as properties: every (input, target) pair of every
// document lands in exactly one bucket sequence or in the dropped count, no sequence crosses a
// document, lengths are powers of two within [min, max]; the sampler drains each bucket's share
// per cycle, uses every sequence each epoch, and is a pure function of (seed, step).
// Also the synthetic documents.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "core/check.h"
#include "data/corpus.h"
#include "data/curriculum.h"
#include "data/decompose.h"
#include "data/synth.h"
#include "data/tokenizer.h"

namespace rt {
namespace {

std::vector<uint64_t> random_offsets(int docs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> off{0};
  for (int d = 0; d < docs; ++d) {
    const int kind = static_cast<int>(rng() % 6);
    uint64_t n = kind == 0   ? rng() % 3                          // empty or a single pair
                 : kind == 1 ? (uint64_t(1) << (rng() % 12)) + 1  // exactly 2^k pairs
                 : kind == 2 ? 5000 + rng() % 20000               // above max_len
                             : 1 + rng() % 3000;
    off.push_back(off.back() + n);
  }
  return off;
}

TEST(Decompose, EveryPairOnceOrDropped) {
  for (uint64_t seed : {1, 2, 3}) {
    const std::vector<uint64_t> off = random_offsets(300, seed);
    const int lo = 4, hi = 11;
    const Buckets b = decompose_documents(off, lo, hi);
    // covered[p]: how many sequences use the pair (token p -> token p + 1).
    std::vector<int> covered(off.back(), 0);
    std::map<uint64_t, size_t> doc_of;  // first token -> document
    for (size_t d = 0; d + 1 < off.size(); ++d) doc_of[off[d]] = d;
    int64_t pairs_in_buckets = 0;
    for (int k = lo; k <= hi; ++k)
      for (uint64_t start : b.of(k)) {
        const uint64_t len = uint64_t(1) << k;
        // The sequence tokens[start : start + len + 1] lies inside one document.
        auto it = std::prev(doc_of.upper_bound(start));
        const uint64_t doc_end = off[it->second + 1];
        ASSERT_LE(start + len + 1, doc_end) << "crosses a document boundary";
        for (uint64_t p = start; p < start + len; ++p) ++covered[p];
        pairs_in_buckets += static_cast<int64_t>(len);
      }
    int64_t total = 0;
    for (size_t d = 0; d + 1 < off.size(); ++d) {
      const uint64_t n = off[d + 1] - off[d];
      if (n >= 2) total += static_cast<int64_t>(n - 1);
      if (n >= 1) {
        EXPECT_EQ(covered[off[d + 1] - 1], 0) << "the last token of a document has no pair";
      }
    }
    for (int c : covered) ASSERT_LE(c, 1) << "a pair used twice";
    EXPECT_EQ(b.total_pairs, total);
    EXPECT_EQ(pairs_in_buckets + b.dropped_pairs, total);
    // What was dropped is always a remainder below min_len.
    EXPECT_LT(b.dropped_pairs, static_cast<int64_t>(off.size()) << lo);
  }
}

TEST(Decompose, PiecesFollowTheSetBitsLargestFirst) {
  // One document of 1 + (2*2048 + 1024 + 8 + 3) pairs, buckets 2^3..2^11.
  const uint64_t m = 2 * 2048 + 1024 + 8 + 3;
  const Buckets b = decompose_documents({0, m + 1}, 3, 11);
  EXPECT_EQ(b.of(11), (std::vector<uint64_t>{0, 2048}));
  EXPECT_EQ(b.of(10), (std::vector<uint64_t>{4096}));
  EXPECT_EQ(b.of(3), (std::vector<uint64_t>{5120}));
  EXPECT_EQ(b.dropped_pairs, 3);
}

CurriculumSchedule make(const std::string& kind, int64_t cycles, uint64_t seed = 5) {
  // Buckets 2^4..2^7 with 100, 37, 21 and 5 sequences; 128 tokens per step.
  CurriculumSpec spec;
  spec.kind = *enum_from_name<CurriculumKind>(kind);
  spec.cycles = cycles;
  return CurriculumSchedule({100, 37, 21, 5}, 4, 128, spec, seed);
}

TEST(Curriculum, DrainsEachBucketsShareOfEveryCycle) {
  for (const char* kind : {"uniform", "natural", "grow_linear", "grow_p2"}) {
    const CurriculumSchedule s = make(kind, 3);
    // batches: ceil(100/8) = 13, ceil(37/4) = 10, ceil(21/2) = 11, ceil(5/1) = 5
    EXPECT_EQ(s.steps_per_epoch(), 13 + 10 + 11 + 5) << kind;
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      std::map<int, std::set<int64_t>> batches;
      int64_t step = epoch * s.steps_per_epoch();
      for (int64_t cycle = 0; cycle < 3; ++cycle) {
        std::map<int, int64_t> drawn;
        int64_t len = 0;
        for (int k = 4; k <= 7; ++k) len += s.cycle_share(k, cycle);
        for (int64_t i = 0; i < len; ++i, ++step) {
          const auto d = s.at(step);
          EXPECT_EQ(d.epoch, epoch);
          ++drawn[d.log2_len];
          EXPECT_TRUE(batches[d.log2_len].insert(d.batch).second) << "batch drawn twice";
        }
        for (int k = 4; k <= 7; ++k)
          EXPECT_EQ(drawn[k], s.cycle_share(k, cycle)) << kind << " bucket " << k;
      }
      for (int k = 4; k <= 7; ++k) EXPECT_EQ(static_cast<int64_t>(batches[k].size()), s.batches(k));
    }
  }
}

TEST(Curriculum, EverySequenceEveryEpoch) {
  const CurriculumSchedule s = make("grow_p2", 1);
  const std::vector<int64_t> sizes = {100, 37, 21, 5};
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::map<int, std::map<int64_t, int>> uses;
    for (int64_t step = epoch * s.steps_per_epoch(); step < (epoch + 1) * s.steps_per_epoch();
         ++step) {
      const auto d = s.at(step);
      const std::vector<int64_t> ids = s.sequences(d);
      EXPECT_EQ(static_cast<int64_t>(ids.size()), s.per_step(d.log2_len));
      for (int64_t id : ids) ++uses[d.log2_len][id];
    }
    for (int k = 4; k <= 7; ++k) {
      const int64_t n = sizes[k - 4];
      EXPECT_EQ(static_cast<int64_t>(uses[k].size()), n)
          << "bucket " << k << ": a sequence was never used";
      // Only the last batch wraps around: n mod per_step sequences at most are used twice.
      int64_t twice = 0;
      for (auto [id, count] : uses[k]) {
        EXPECT_LE(count, 2);
        twice += count == 2;
      }
      EXPECT_EQ(twice, s.batches(k) * s.per_step(k) - n);
    }
  }
}

TEST(Curriculum, IsAPureFunctionOfSeedAndStep) {
  const CurriculumSchedule a = make("grow_p2", 4), b = make("grow_p2", 4),
                           c = make("grow_p2", 4, 6);
  int differ = 0;
  for (int64_t step = 0; step < 3 * a.steps_per_epoch(); ++step) {
    // A fresh schedule asked about a late step first (a resume) agrees with one walked in order.
    const CurriculumSchedule resumed = make("grow_p2", 4);
    const auto x = a.at(step), y = resumed.at(step);
    EXPECT_EQ(x.log2_len, y.log2_len);
    EXPECT_EQ(x.batch, y.batch);
    EXPECT_EQ(a.sequences(x), b.sequences(b.at(step)));
    differ += a.at(step).log2_len != c.at(step).log2_len;
  }
  EXPECT_GT(differ, 5);  // another seed, another schedule
}

TEST(Curriculum, GrowP2LengthensWithinACycle) {
  // Many equal buckets: with odds 8:4:2:1 short buckets run out first in every cycle.
  CurriculumSpec spec;
  spec.kind = CurriculumKind::GrowP2;
  spec.cycles = 2;
  const CurriculumSchedule s({800, 400, 200, 100}, 4, 128, spec, 9);
  const int64_t per_cycle = s.steps_per_epoch() / 2;
  for (int64_t cycle = 0; cycle < 2; ++cycle) {
    double first = 0, second = 0;
    for (int64_t i = 0; i < per_cycle; ++i)
      (i < per_cycle / 2 ? first : second) += s.at(cycle * per_cycle + i).log2_len;
    EXPECT_LT(first, second) << "cycle " << cycle;
  }
  EXPECT_EQ(curriculum_odds(CurriculumKind::GrowP2, 4), (std::vector<double>{8, 4, 2, 1}));
  EXPECT_EQ(curriculum_odds(CurriculumKind::GrowLinear, 3), (std::vector<double>{3, 2, 1}));
}

TEST(Curriculum, ARunShorterThanAnEpochSpansItsCyclesOverItsSteps) {
  // Buckets 2^4..2^7 with 8000, 4000, 2000 and 1000 sequences, 128 tokens per step: batches
  // 1000 + 1000 + 1000 + 1000 = an epoch of 4000 steps; a run of 300 steps in 4 cycles.
  CurriculumSpec spec;
  spec.kind = CurriculumKind::GrowP2;
  spec.cycles = 4;
  const std::vector<int64_t> sizes = {8000, 4000, 2000, 1000};
  const CurriculumSchedule epoch_long(sizes, 4, 128, spec, 3);
  spec.span_steps = 300;
  const CurriculumSchedule s(sizes, 4, 128, spec, 3);
  ASSERT_EQ(epoch_long.period(), 4000);
  ASSERT_EQ(s.period(), 300);
  for (int k = 4; k <= 7; ++k) EXPECT_EQ(s.period_batches(k), 75) << k;

  // Over the epoch-long cycles the first 300 steps barely reach the longest bucket; over the
  // run's own they reach every bucket by its share, cycle by cycle, shortest first.
  std::map<int, int64_t> epoch_draws;
  for (int64_t step = 0; step < 300; ++step) ++epoch_draws[epoch_long.at(step).log2_len];
  EXPECT_LT(epoch_draws[7], 30);
  std::map<std::pair<int, int64_t>, int> seen;  // (bucket, batch) over three periods
  for (int64_t period = 0; period < 3; ++period)
    for (int64_t cycle = 0, step = period * 300; cycle < 4; ++cycle) {
      std::map<int, int64_t> drawn;
      double first = 0, second = 0;
      int64_t len = 0;
      for (int k = 4; k <= 7; ++k) len += s.cycle_share(k, cycle);
      for (int64_t i = 0; i < len; ++i, ++step) {
        const auto d = s.at(step);
        ++drawn[d.log2_len];
        (i < len / 2 ? first : second) += d.log2_len;
        EXPECT_EQ(d.epoch, 0) << "3 x 75 batches stay within the bucket's first epoch";
        EXPECT_EQ(++seen[std::make_pair(d.log2_len, d.batch)], 1)
            << "batch " << d.batch << " drawn twice";
      }
      for (int k = 4; k <= 7; ++k) EXPECT_EQ(drawn[k], s.cycle_share(k, cycle)) << k;
      EXPECT_LT(first, second) << "period " << period << " cycle " << cycle;
    }

  // Shares scaled by largest remainders add up to the span; a span of an epoch or more is
  // the epoch's schedule.
  spec.span_steps = 7;
  const CurriculumSchedule odd({100, 37, 21, 5}, 4, 128, spec, 5);  // batches 13, 10, 11, 5
  EXPECT_EQ(
      odd.period_batches(4) + odd.period_batches(5) + odd.period_batches(6) + odd.period_batches(7),
      7);
  EXPECT_EQ(odd.period_batches(4), 2);  // 13 x 7 / 39 = 2.33
  EXPECT_EQ(odd.period_batches(6), 2);  // 11 x 7 / 39 = 1.97
  spec.span_steps = 39;
  const CurriculumSchedule whole({100, 37, 21, 5}, 4, 128, spec, 5);
  const CurriculumSchedule plain = make("grow_p2", 4);
  for (int64_t step = 0; step < 100; ++step) {
    EXPECT_EQ(whole.at(step).log2_len, plain.at(step).log2_len);
    EXPECT_EQ(whole.at(step).batch, plain.at(step).batch);
    EXPECT_EQ(whole.at(step).epoch, plain.at(step).epoch);
  }
}

TEST(Synth, PasskeyDocumentsHaveTheirKeyAndAnswers) {
  for (int64_t length : {128, 256, 1000, 4096})
    for (double depth : {0.0, 0.5, 1.0}) {
      const SynthDocument d = passkey_document(length, depth, static_cast<uint64_t>(length) + 7);
      ASSERT_EQ(static_cast<int64_t>(d.tokens.size()), length);
      EXPECT_EQ(d.tokens.back(), ByteTokenizer::kEos);
      const std::string text = ByteTokenizer::decode(d.tokens);
      ASSERT_EQ(d.answers.size(), 5u);
      std::string key;
      for (int64_t p : d.answers) key += static_cast<char>(d.tokens[p]);
      EXPECT_NE(text.find("The pass key is:" + key + ". Remember it."), std::string::npos) << text;
      EXPECT_NE(text.find("What is the pass key? The pass key is:" + key + ".<eos>"),
                std::string::npos);
      EXPECT_EQ(text.find_first_of("0123456789:"), text.find("The pass key is:") + 15);
      // The key sits at the requested depth of the filler (moved back at most 40 characters
      // to the end of a sentence).
      const double filler =
          static_cast<double>(length - 1) -
          static_cast<double>(std::string(" The pass key is:12345. Remember it. ").size() +
                              std::string(" What is the pass key? The pass key is:12345.").size());
      const double at = static_cast<double>(text.find(" The pass key is:"));
      EXPECT_LE(at, depth * filler + 1) << length;
      EXPECT_GE(at, depth * filler - 41) << length;
    }
}

TEST(Synth, RepeatedQuestionsFollowTheKeyAndAllCountAsAnswers) {
  const std::string question = " What is the pass key? The pass key is:";
  for (int64_t length : {256, 1000, 4096})
    for (double depth : {0.0, 0.3, 1.0}) {
      const SynthDocument d = passkey_document(length, depth, static_cast<uint64_t>(length) + 9, 4);
      ASSERT_EQ(static_cast<int64_t>(d.tokens.size()), length);
      const std::string text = ByteTokenizer::decode(d.tokens);
      const size_t key_at = text.find(" The pass key is:");
      ASSERT_NE(key_at, std::string::npos);
      const std::string key = text.substr(key_at + 17, 5);
      size_t asked = 0;
      for (size_t at = text.find(question); at != std::string::npos;
           at = text.find(question, at + 1)) {
        EXPECT_GT(at, key_at) << "a question before the key: " << text;
        EXPECT_EQ(text.substr(at + question.size(), 6), key + ".");
        ++asked;
      }
      // 256 tokens leave room for three (the filler keeps at least 64 tokens).
      EXPECT_EQ(asked, length == 256 ? 3u : 4u) << length;
      ASSERT_EQ(d.answers.size(), 5 * asked);
      for (size_t i = 0; i < d.answers.size(); ++i)
        EXPECT_EQ(d.tokens[d.answers[i]], key[i % 5]) << "answer " << i;
      EXPECT_NE(text.find(question + key + ".<eos>"), std::string::npos);  // the last at the end
    }
  // One question is the document it always was.
  EXPECT_EQ(passkey_document(1000, 0.5, 3, 1).tokens, passkey_document(1000, 0.5, 3).tokens);
}

// The search of tokenized_document, with bytes as the "subword" tokenizer: it must find the
// byte length that fills the document exactly, and map every answer byte to its token, so the
// byte documents come back token for token.
TEST(Synth, TokenizedDocumentsWithBytesAreTheByteDocuments) {
  const std::unique_ptr<TextTokenizer> bytes = TextTokenizer::bytes();
  for (int64_t length : {128, 300, 1025, 4097})
    for (int task = 0; task < 2; ++task) {
      const auto make = [&](int64_t n) {
        return task == 0 ? passkey_document(n, 0.3, 11, 3) : mqar_document(n, 11);
      };
      const SynthDocument want = make(length), got = tokenized_document(make, length, *bytes);
      EXPECT_EQ(got.tokens, want.tokens) << length << " task " << task;
      EXPECT_EQ(got.answers, want.answers) << length << " task " << task;
    }
}

TEST(Synth, Pow2DocumentsStayWholeUnderDecomposition) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ringtrain-synth-" + std::to_string(::getpid()) + ".h5"))
                               .string();
  SynthSpec spec;
  spec.documents = 400;
  spec.min_len = 200;  // the powers of two 256..2048
  spec.max_len = 3000;
  spec.length_dist = "pow2";
  synth_corpus(spec, path);
  const std::vector<uint64_t> off = Corpus::open(path, "data.corpus").doc_offsets();
  std::filesystem::remove(path);
  std::set<uint64_t> lengths;
  for (size_t d = 0; d + 1 < off.size(); ++d) lengths.insert(off[d + 1] - off[d]);
  EXPECT_EQ(lengths, (std::set<uint64_t>{257, 513, 1025, 2049}));
  const Buckets b = decompose_documents(off, 8, 11);
  EXPECT_EQ(b.dropped_pairs, 0);
  size_t sequences = 0;
  for (int k = 8; k <= 11; ++k) sequences += b.of(k).size();
  EXPECT_EQ(sequences, off.size() - 1);  // one sequence per document
  // Odds 2^-k: every bucket holds about a quarter of the tokens (k uniform would give 1/15 to
  // 8/15).
  for (int k = 8; k <= 11; ++k) {
    const double share = static_cast<double>(b.pairs(k)) / static_cast<double>(off.back());
    EXPECT_GT(share, 0.15) << k;
    EXPECT_LT(share, 0.35) << k;
  }

  spec.min_len = 300;
  spec.max_len = 500;
  EXPECT_THROW(synth_corpus(spec, path), UserError);
}

TEST(Synth, MqarAnswersAreTheRecalledValues) {
  const SynthDocument d = mqar_document(512, 3);
  ASSERT_EQ(d.tokens.size(), 512u);
  const std::string text = ByteTokenizer::decode(d.tokens);
  ASSERT_GT(d.answers.size(), 4u);
  for (size_t a = 0; a < d.answers.size(); a += 2) {
    const size_t p = static_cast<size_t>(d.answers[a]);
    const std::string key = text.substr(p - 4, 3), value = text.substr(p, 2);
    EXPECT_NE(text.find(key + "=" + value + " "), std::string::npos) << key << " " << value;
  }
}

// Buckets are checked against the corpus when read: every sequence inside the tokens, at least
// one sequence, counts that add up; each problem one line naming the file and the dataset.
TEST(Decompose, ReadBucketsRefusesBucketsThatDoNotFitTheCorpus) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ringtrain-buckets-" + std::to_string(::getpid()) + ".h5"))
                               .string();
  SynthSpec spec;
  spec.documents = 20;
  spec.min_len = 200;
  spec.max_len = 600;
  synth_corpus(spec, path);
  int64_t N = 0;
  Buckets good;
  {
    const Corpus corpus = Corpus::open(path, "data.corpus");  // closed before the writes
    N = corpus.info().num_tokens;
    good = decompose_documents(corpus.doc_offsets(), 6, 9);
  }
  auto message = [&](const Buckets& b) {
    write_buckets(path, b);
    try {
      read_buckets(path, "data.corpus", N);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("<no UserError>");
  };
  write_buckets(path, good);
  EXPECT_EQ(read_buckets(path, "data.corpus", N).sizes(), good.sizes());

  Buckets beyond = good;
  beyond.starts[1][0] =
      static_cast<uint64_t>(N) - 10;  // 2^7 + 1 tokens from there run past the end
  std::string msg = message(beyond);
  EXPECT_NE(msg.find("data.corpus: " + path + ": /buckets/7/starts[0] = " + std::to_string(N - 10) +
                     " starts a sequence of 129 tokens beyond the corpus's " + std::to_string(N) +
                     " tokens"),
            std::string::npos)
      << msg;
  beyond.starts[1][0] = UINT64_MAX;  // no overflow in the check
  EXPECT_NE(message(beyond).find("/buckets/7/starts[0] = 18446744073709551615"), std::string::npos);

  Buckets empty = good;
  for (auto& s : empty.starts) s.clear();
  msg = message(empty);
  EXPECT_NE(msg.find("every bucket 2^6..2^9 is empty"), std::string::npos) << msg;

  Buckets crowded = good;
  crowded.starts[3].assign(static_cast<size_t>(N), 0);  // more sequences of 2^9 than N tokens hold
  msg = message(crowded);
  EXPECT_NE(
      msg.find("/buckets/9/starts holds " + std::to_string(N) + " sequences of 2^9 + 1 tokens"),
      std::string::npos)
      << msg;

  Buckets counts = good;
  counts.dropped_pairs = -3;
  EXPECT_NE(message(counts).find("/buckets counts -3 dropped"), std::string::npos);
  for (const Buckets* b : {&beyond, &empty, &crowded})
    EXPECT_EQ(message(*b).find('\n'), std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace rt
