#include "trainer/eval_command.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>

#include "core/check.h"
#include "data/corpus.h"
#include "data/loader.h"
#include "data/memory.h"
#include "data/synth.h"
#include "data/tokenizer.h"
#include "kernels/arena.h"
#include "model/model.h"
#include "trainer/batching.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe.h"

namespace rt {

int64_t parse_length(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  int64_t scale = 1;
  if (end && (*end == 'k' || *end == 'K'))
    scale = 1024, ++end;
  else if (end && (*end == 'm' || *end == 'M'))
    scale = 1 << 20, ++end;
  if (end == text.c_str() || *end != '\0' || n <= 0 ||
      n > std::numeric_limits<int64_t>::max() / scale)
    throw UserError(cat(what, ": '", text, "' is not a length; expected e.g. 1k, 4096 or 1m"));
  return n * scale;
}

namespace {

struct Cell {
  int64_t correct = 0, total = 0;
  int64_t tokens_right = 0, tokens = 0;  // single answer tokens: how near a miss is
  std::string example;  // the first document's answers: "expected 71432, predicted 71402"
  double accuracy() const {
    return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  }
  double token_accuracy() const {
    return tokens ? static_cast<double>(tokens_right) / static_cast<double>(tokens) : 0.0;
  }
};

// One batch of documents of the same length: answers right among the given ones.
Cell score(Model& model, Arena& arena, const std::vector<SynthDocument>& docs, bool per_document,
           const TextTokenizer* tokenizer) {
  const int64_t L = static_cast<int64_t>(docs[0].tokens.size()),
                n = static_cast<int64_t>(docs.size());
  const SequenceLayout layout = SequenceLayout::zigzag(L, 1, 0);
  OwnedBatch batch;  // no targets: the answers are read from the predictions
  for (const SynthDocument& d : docs)
    for (int64_t t = 0; t < L; ++t) {
      batch.tokens.push_back(d.tokens[t]);
      batch.targets.push_back(-1);
      batch.positions.push_back(static_cast<int32_t>(t));
    }
  batch.n_seqs = n;
  batch.layout = &layout;
  Tensor argmax = Tensor::empty({n * L}, DType::I32);
  model.predict(batch.view(nullptr), arena, argmax);
  Cell cell;
  std::string expected, predicted;
  std::vector<int32_t> want, got;
  for (int64_t p : docs[0].answers) {
    want.push_back(docs[0].tokens[p]);
    got.push_back(argmax.i32()[p - 1]);
  }
  if (tokenizer) {
    expected = tokenizer->decode(want);
    predicted = tokenizer->decode(got);
  } else {
    for (size_t j = 0; j < want.size(); ++j) {
      expected += static_cast<char>(want[j]);
      predicted += got[j] >= 32 && got[j] < 127 ? static_cast<char>(got[j]) : '?';
    }
  }
  cell.example = "expected " + expected + ", predicted " + predicted;
  for (int64_t i = 0; i < n; ++i) {
    const SynthDocument& d = docs[i];
    // Position p is predicted by the output at p - 1. Per document (passkey: every digit of
    // the key) or per query (mqar: the two digits of each value).
    const size_t group = per_document ? d.answers.size() : 2;
    for (size_t a = 0; a < d.answers.size(); a += group) {
      bool ok = true;
      for (size_t j = a; j < a + group && j < d.answers.size(); ++j) {
        const bool right = argmax.i32()[i * L + d.answers[j] - 1] == d.tokens[d.answers[j]];
        ok &= right;
        cell.tokens_right += right;
        ++cell.tokens;
      }
      cell.correct += ok;
      ++cell.total;
    }
  }
  return cell;
}

std::string percent(double x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%5.1f%%", 100.0 * x);
  return buf;
}

// The accuracy table: a row per length, a column per depth (passkey), the row's overall
// accuracy and token accuracy, and the first document's answer.
void print_table(const EvalOptions& opt, int64_t step, const std::vector<double>& depths,
                 const std::vector<std::vector<Cell>>& table) {
  const bool passkey = opt.task == "passkey";
  std::printf("%s accuracy of %s (step %lld), %lld %s per cell\n", opt.task.c_str(),
              opt.checkpoint.c_str(), static_cast<long long>(step),
              static_cast<long long>(opt.samples),
              passkey ? "documents" : "documents (scored per query)");
  std::printf("%14s", passkey ? "length \\ depth" : "length");
  if (passkey)
    for (double d : depths) std::printf(" %7.2f", d);
  std::printf(" %7s %7s\n", "all", "tokens");
  for (size_t li = 0; li < opt.lengths.size(); ++li) {
    std::printf("%14lld", static_cast<long long>(opt.lengths[li]));
    Cell all;
    for (const Cell& c : table[li]) {
      if (passkey) std::printf(" %s", percent(c.accuracy()).c_str());
      all.correct += c.correct;
      all.total += c.total;
      all.tokens_right += c.tokens_right;
      all.tokens += c.tokens;
    }
    std::printf(" %s  %s   e.g. %s\n", percent(all.accuracy()).c_str(),
                percent(all.token_accuracy()).c_str(), table[li][0].example.c_str());
  }
}

// "[a, b, c]" as the JSON files of --out write lists.
template <class T>
std::string json_list(const std::vector<T>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

// Writes the JSON text of --out.
void write_out(const std::string& path, const std::string& json) {
  std::ofstream out(path);
  out << json;
  if (!out) throw UserError(cat("eval: --out ", path, ": cannot write"));
  std::printf("wrote %s\n", path.c_str());
}

// The table as JSON (--out): accuracy and token accuracy per length and depth.
void write_json(const EvalOptions& opt, int64_t step, const std::vector<double>& depths,
                const std::vector<std::vector<Cell>>& table) {
  // One row per length, one column per depth.
  auto matrix = [&](double (Cell::*value)() const) {
    std::vector<std::string> rows;
    for (const std::vector<Cell>& row : table) {
      std::vector<double> cells;
      for (const Cell& c : row) cells.push_back((c.*value)());
      rows.push_back(json_list(cells));
    }
    return json_list(rows);
  };
  const bool passkey = opt.task == "passkey";
  write_out(opt.out_json, cat("{\"task\": \"", opt.task, "\", \"checkpoint\": \"", opt.checkpoint,
                              "\", \"step\": ", step, ", \"samples\": ", opt.samples,
                              ", \"lengths\": ", json_list(opt.lengths),
                              ", \"depths\": ", json_list(passkey ? depths : std::vector<double>{}),
                              ", \"accuracy\": ", matrix(&Cell::accuracy),
                              ", \"token_accuracy\": ", matrix(&Cell::token_accuracy), "}\n"));
}

}  // namespace

std::unique_ptr<Model> allocate_model(const ModelConfig& cfg, const std::string& what) {
  auto model = std::make_unique<Model>(cfg, /*allocate=*/false);
  const double bytes = 8.0 * static_cast<double>(model->params().numel());
  const MemoryAvailable available = host_memory_available();
  if (bytes > static_cast<double>(available.bytes))
    throw UserError(cat(what, ": its model needs ", format_bytes(bytes), ", more than the ",
                        format_bytes(static_cast<double>(available.bytes)), " available (",
                        available.source, ")"));
  model->params().allocate();
  return model;
}

// The size comes from the checkpoint's recipe.
std::unique_ptr<Model> load_model(const std::string& checkpoint, CheckpointState& state) {
  state = read_checkpoint_state(checkpoint);
  const Recipe recipe = parse_recipe(state.recipe_yaml, checkpoint + " (its recipe)");
  auto model = allocate_model(recipe.model, checkpoint);
  load_checkpoint(checkpoint, model->params(), nullptr);
  return model;
}

namespace {

int eval_retrieval(const EvalOptions& opt, Model& model, int64_t step) {
  for (int64_t L : opt.lengths)
    if (L < kSynthMinLength)
      throw UserError(
          cat("eval: --lengths: ", L, " is shorter than a task document (", kSynthMinLength, ")"));
  const std::unique_ptr<TextTokenizer> tokenizer =
      opt.tokenizer.empty() ? nullptr : TextTokenizer::sentencepiece(opt.tokenizer);
  if (tokenizer && tokenizer->info().vocab_size > model.config().vocab_size)
    throw UserError(cat("eval: the tokenizer's vocabulary (", tokenizer->info().vocab_size,
                        ") is larger than the model's (", model.config().vocab_size, " in ",
                        opt.checkpoint, "); expected --tokenizer of the model's corpus"));
  Arena arena;
  const bool passkey = opt.task == "passkey";
  const std::vector<double> depths = passkey ? opt.depths : std::vector<double>{-1.0};
  std::vector<std::vector<Cell>> table(opt.lengths.size(), std::vector<Cell>(depths.size()));
  uint64_t doc_seed = opt.seed;
  for (size_t li = 0; li < opt.lengths.size(); ++li)
    for (size_t di = 0; di < depths.size(); ++di) {
      std::vector<SynthDocument> docs;
      for (int64_t s = 0; s < opt.samples; ++s)
        docs.push_back(
            task_document(opt.task, opt.lengths[li], depths[di], ++doc_seed, 1, tokenizer.get()));
      table[li][di] = score(model, arena, docs, passkey, tokenizer.get());
    }
  print_table(opt, step, depths, table);
  if (!opt.out_json.empty()) write_json(opt, step, depths, table);
  return 0;
}

// Perplexity on the user's corpus by sequence length: `samples` sequences of L tokens per
// length, their starts spread evenly over the corpus (the same for every checkpoint, so runs
// compare), each predicting its next L tokens.
int eval_perplexity(const EvalOptions& opt, Model& model, int64_t step) {
  if (opt.corpus.empty()) throw UserError("eval --task perplexity: --corpus CORPUS.h5 is required");
  const Corpus corpus = Corpus::open(opt.corpus, "eval --corpus");
  const int64_t N = corpus.info().num_tokens;
  if (corpus.info().vocab_size > model.config().vocab_size)
    throw UserError(cat("eval --corpus: ", opt.corpus, " has a vocabulary of ",
                        corpus.info().vocab_size, ", more than the model's ",
                        model.config().vocab_size));
  Arena arena;
  std::printf("perplexity of %s (step %lld) on %s, %lld sequences per length\n",
              opt.checkpoint.c_str(), static_cast<long long>(step), opt.corpus.c_str(),
              static_cast<long long>(opt.samples));
  std::printf("%10s %12s %12s %12s\n", "length", "tokens", "loss", "perplexity");
  std::vector<double> losses;
  for (int64_t L : opt.lengths) {
    if (L + 1 > N)
      throw UserError(cat("eval --lengths: ", L, " needs ", L + 1, " tokens, more than the ", N,
                          " of ", opt.corpus));
    const SequenceLayout layout = SequenceLayout::zigzag(L, 1, 0);
    double loss_sum = 0;
    for (int64_t i = 0; i < opt.samples; ++i) {
      const int64_t start = opt.samples == 1 ? 0 : i * (N - L - 1) / (opt.samples - 1);
      OwnedBatch batch;
      batch.n_seqs = 1;
      batch.layout = &layout;
      read_sequence(corpus, start, layout, batch.tokens, batch.targets, batch.positions);
      loss_sum += model.forward_loss(batch.view(nullptr), arena);
      arena.reset();
    }
    const double tokens = static_cast<double>(L * opt.samples), loss = loss_sum / tokens;
    losses.push_back(loss);
    std::printf("%10lld %12.0f %12.4f %12.3f\n", static_cast<long long>(L), tokens, loss,
                std::exp(loss));
  }
  if (!opt.out_json.empty())
    write_out(opt.out_json, cat("{\"task\": \"perplexity\", \"checkpoint\": \"", opt.checkpoint,
                                "\", \"step\": ", step, ", \"corpus\": \"", opt.corpus,
                                "\", \"samples\": ", opt.samples, ", \"lengths\": ",
                                json_list(opt.lengths), ", \"loss\": ", json_list(losses), "}\n"));
  return 0;
}

}  // namespace

int run_eval(const EvalOptions& opt) {
  if (opt.task != "passkey" && opt.task != "mqar" && opt.task != "perplexity")
    throw UserError(cat("eval: --task '", opt.task, "' is not one of passkey, mqar, perplexity"));
  if (opt.lengths.empty()) throw UserError("eval: --lengths is required (e.g. --lengths 1k,4k)");
  if (opt.samples < 1)
    throw UserError(cat("eval: --samples ", opt.samples, "; expected at least 1"));
  CheckpointState state;
  const std::unique_ptr<Model> model = load_model(opt.checkpoint, state);
  if (opt.task == "perplexity") return eval_perplexity(opt, *model, state.step);
  return eval_retrieval(opt, *model, state.step);
}

}  // namespace rt
