// `ringtrain` subcommands. Errors end as one line on stderr with the exit code of their kind
// (2 for bad input); see core/check.h and trainer/collective.h.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <algorithm>
#include <bit>
#include <map>

#include "data/corpus.h"
#include "data/decompose.h"
#include "data/h5.h"
#include "data/synth.h"
#include "hf/convert.h"
#include "kernels/device.h"
#include "trainer/checkpoint.h"
#include "trainer/collective.h"
#include "trainer/eval_command.h"
#include "trainer/infer_command.h"
#include "trainer/op_command.h"
#include "trainer/train.h"

namespace rt {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  ringtrain train RECIPE.yaml [--set key.path=value]... [--resume | --resume=PATH | "
    "--resume=auto]\n"
    "                  [--overwrite] [--stop-at=N] [--dry-run]\n"
    "  ringtrain data import --out CORPUS.h5 [--format auto|text|jsonl] [--tokenizer SPM.model] "
    "FILE...\n"
    "  ringtrain data import --out CORPUS.h5 --format tokens --vocab-size N --eos-id N "
    "[--token-dtype u16|u32] FILE.npy|FILE.bin...\n"
    "  ringtrain data decompose CORPUS.h5 --min-len 256 --max-len 1048576\n"
    "  ringtrain data synth --task passkey|mqar --out CORPUS.h5 [--docs N] [--min-len N] "
    "[--max-len N]\n"
    "                       [--length-dist log_uniform|uniform|fixed|pow2] [--questions N] [--seed "
    "N]\n"
    "                       [--tokenizer SPM.model]\n"
    "  ringtrain eval CHECKPOINT.h5 --task passkey|mqar|perplexity --lengths 1k,4k,...\n"
    "                 [--depths 0,0.5,1] [--corpus CORPUS.h5 (perplexity)]\n"
    "                 [--samples N] [--seed N] [--out RESULT.json] [--tokenizer SPM.model]\n"
    "  ringtrain inspect CHECKPOINT.h5 | CORPUS.h5\n"
    "  ringtrain convert HF_DIR OUT.h5 | CHECKPOINT.h5 OUT_DIR [--dtype f32|bf16] "
    "[--shard-size BYTES]\n"
    "  ringtrain logits CHECKPOINT.h5 --tokens 1,2,3 [--out LOGITS.npy]\n"
    "  ringtrain generate CHECKPOINT.h5 --prompt TEXT | --tokens 1,2,3 [--max-new N] "
    "[--temperature T]\n"
    "                     [--top-p P] [--seed N] [--tokenizer SPM.model]\n"
    "  ringtrain op glr|attention|mlp|gla|mamba2 --in IN.h5 --out OUT.h5\n"
    "  ringtrain --version | --help\n"
    "Run under mpirun/srun for several ranks: mpirun -np 4 ringtrain train recipe.yaml\n";

[[noreturn]] void usage_error(const std::string& what) {
  throw UserError(cat(what, "; see 'ringtrain --help'"));
}

int cmd_train(const std::vector<std::string>& args) {
  TrainOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--set") {
      if (i + 1 >= args.size()) usage_error("--set needs key.path=value");
      opt.overrides.push_back(args[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      opt.overrides.push_back(a.substr(6));
    } else if (a == "--resume") {
      opt.resume = true;
    } else if (a.rfind("--resume=", 0) == 0) {
      opt.resume = true;
      opt.resume_path = a.substr(9);
      if (opt.resume_path.empty()) usage_error("--resume= needs a checkpoint file or directory");
    } else if (a == "--overwrite") {
      opt.overwrite = true;
    } else if (a == "--dry-run") {
      opt.dry_run = true;
    } else if (a.rfind("--stop-at=", 0) == 0) {
      char* end = nullptr;
      opt.stop_at = std::strtoll(a.c_str() + 10, &end, 10);
      if (*end != '\0' || opt.stop_at < 1)
        usage_error(cat("--stop-at: '", a.substr(10), "' is not a step number >= 1"));
    } else if (a.rfind("--", 0) == 0) {
      usage_error(
          cat("train: unknown option '", a,
              "' (valid: --set, --resume, --resume=PATH, --overwrite, --stop-at=N, --dry-run)"));
    } else if (opt.recipe_path.empty()) {
      opt.recipe_path = a;
    } else {
      usage_error(cat("train: a second recipe '", a, "' (one recipe per run)"));
    }
  }
  if (opt.recipe_path.empty()) usage_error("train: no recipe given (ringtrain train RECIPE.yaml)");
  return run_train(opt);
}

// --key value pairs and positional arguments of a subcommand; unknown keys are an error.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  Args(const std::string& command, const std::vector<std::string>& args,
       const std::vector<std::string>& keys) {
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i].rfind("--", 0) != 0) {
        positional.push_back(args[i]);
        continue;
      }
      if (std::find(keys.begin(), keys.end(), args[i]) == keys.end()) {
        std::string valid;
        for (const auto& k : keys) valid += (valid.empty() ? "" : ", ") + k;
        usage_error(cat(command, ": unknown option '", args[i], "' (valid: ", valid, ")"));
      }
      if (i + 1 >= args.size()) usage_error(cat(command, ": ", args[i], " needs a value"));
      values[args[i]] = args[i + 1];
      ++i;
    }
  }
  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
  int64_t number(const std::string& command, const std::string& key, int64_t fallback) const {
    auto it = values.find(key);
    return it == values.end() ? fallback : parse_length(it->second, cat(command, " ", key));
  }
};

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    if (end > pos) items.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return items;
}

int cmd_data_import(const std::vector<std::string>& raw) {
  const Args a("data import", raw,
               {"--out", "--format", "--tokenizer", "--vocab-size", "--eos-id", "--token-dtype"});
  const std::string out = a.get("--out"), f = a.get("--format", "auto");
  if (out.empty()) usage_error("data import: --out CORPUS.h5 is required");
  ImportStats s;
  if (f == "tokens") {
    if (!a.values.count("--vocab-size") || !a.values.count("--eos-id"))
      usage_error("data import --format tokens: --vocab-size N and --eos-id N are required");
    TokenizerInfo info;
    info.name = "pretokenized";
    info.vocab_size = a.number("data import", "--vocab-size", 0);
    info.eos_id = a.number("data import", "--eos-id", -1);
    if (info.vocab_size < 2 || info.vocab_size > INT32_MAX || info.eos_id < 0 ||
        info.eos_id >= info.vocab_size)
      usage_error(cat("data import: --vocab-size ", info.vocab_size, " --eos-id ", info.eos_id,
                      ": expected 2 <= vocab size < 2^31 and 0 <= eos id < vocab size"));
    const std::string dtype = a.get("--token-dtype");
    if (!dtype.empty() && dtype != "u16" && dtype != "u32")
      usage_error(cat("data import: --token-dtype '", dtype, "' is not one of u16, u32"));
    s = import_token_arrays(a.positional, out, info, dtype.empty() ? 0 : dtype == "u16" ? 2 : 4);
  } else {
    if (f != "auto" && f != "text" && f != "jsonl")
      usage_error(cat("data import: --format '", f, "' is not one of auto, text, jsonl, tokens"));
    const ImportFormat format = f == "text"    ? ImportFormat::Text
                                : f == "jsonl" ? ImportFormat::Jsonl
                                               : ImportFormat::Auto;
    const std::string model = a.get("--tokenizer");
    const std::unique_ptr<TextTokenizer> tokenizer =
        model.empty() ? TextTokenizer::bytes() : TextTokenizer::sentencepiece(model);
    s = import_corpus(a.positional, out, format, *tokenizer);
  }
  std::printf("wrote %s: %lld documents, %lld tokens (%lld empty inputs skipped), %s\n",
              out.c_str(), static_cast<long long>(s.documents), static_cast<long long>(s.tokens),
              static_cast<long long>(s.empty_skipped), s.fingerprint.c_str());
  return 0;
}

int cmd_data_decompose(const std::vector<std::string>& raw) {
  const Args a("data decompose", raw, {"--min-len", "--max-len"});
  if (a.positional.size() != 1) usage_error("data decompose: expected one CORPUS.h5");
  const int64_t min_len = a.number("data decompose", "--min-len", 256);
  const int64_t max_len = a.number("data decompose", "--max-len", int64_t(1) << 20);
  auto log2_of = [](const char* key, int64_t n) {
    if (n < 2 || (n & (n - 1)) != 0)
      throw UserError(cat("data decompose: ", key, " ", n, " is not a power of two >= 2"));
    return static_cast<int>(std::countr_zero(static_cast<uint64_t>(n)));
  };
  const int lo = log2_of("--min-len", min_len), hi = log2_of("--max-len", max_len);
  if (lo > hi)
    throw UserError(cat("data decompose: --min-len ", min_len, " is above --max-len ", max_len));
  // The offsets are read and the file closed again before the buckets are written into it.
  const std::vector<uint64_t> offsets =
      Corpus::open(a.positional[0], "data decompose").doc_offsets();
  const Buckets buckets = decompose_documents(offsets, lo, hi);
  int64_t sequences = 0;
  for (int64_t n : buckets.sizes()) sequences += n;
  if (sequences == 0) {  // refused before the file changes: training on it would fail later
    uint64_t longest = 0;
    for (size_t d = 0; d + 1 < offsets.size(); ++d)
      longest = std::max(longest, offsets[d + 1] - offsets[d]);
    throw UserError(cat("data decompose: ", a.positional[0], ": its longest document has ", longest,
                        " tokens, fewer than --min-len ", min_len,
                        " + 1, so every bucket would be empty; expected --min-len at most ",
                        longest >= 3 ? std::bit_floor(longest - 1) : 2));
  }
  write_buckets(a.positional[0], buckets);
  std::printf("%s: buckets 2^%d..2^%d\n%s", a.positional[0].c_str(), lo, hi,
              bucket_table(buckets).c_str());
  return 0;
}

int cmd_data_synth(const std::vector<std::string>& raw) {
  const Args a("data synth", raw,
               {"--task", "--out", "--docs", "--min-len", "--max-len", "--length-dist",
                "--questions", "--seed", "--tokenizer"});
  if (!a.positional.empty() || a.get("--out").empty())
    usage_error(
        "data synth: expected --task passkey|mqar --out CORPUS.h5 [options], no positional "
        "arguments");
  SynthSpec spec;
  spec.task = a.get("--task", spec.task);
  spec.documents = a.number("data synth", "--docs", spec.documents);
  spec.min_len = a.number("data synth", "--min-len", spec.min_len);
  spec.max_len = a.number("data synth", "--max-len", spec.max_len);
  spec.questions = a.number("data synth", "--questions", spec.questions);
  spec.length_dist = a.get("--length-dist", spec.length_dist);
  spec.tokenizer = a.get("--tokenizer");
  spec.seed =
      static_cast<uint64_t>(a.number("data synth", "--seed", static_cast<int64_t>(spec.seed)));
  const ImportStats s = synth_corpus(spec, a.get("--out"));
  std::printf("wrote %s: %lld %s documents, %lld tokens, %s\n", a.get("--out").c_str(),
              static_cast<long long>(s.documents), spec.task.c_str(),
              static_cast<long long>(s.tokens), s.fingerprint.c_str());
  return 0;
}

int cmd_eval(const std::vector<std::string>& raw) {
  const Args a("eval", raw,
               {"--task", "--lengths", "--depths", "--samples", "--seed", "--out", "--corpus",
                "--tokenizer"});
  if (a.positional.size() != 1) usage_error("eval: expected one CHECKPOINT.h5");
  EvalOptions opt;
  opt.checkpoint = a.positional[0];
  opt.task = a.get("--task", opt.task);
  for (const std::string& l : split_commas(a.get("--lengths")))
    opt.lengths.push_back(parse_length(l, "eval --lengths"));
  if (!a.get("--depths").empty()) {
    opt.depths.clear();
    for (const std::string& d : split_commas(a.get("--depths"))) {
      char* end = nullptr;
      const double x = std::strtod(d.c_str(), &end);
      if (*end != '\0' || x < 0 || x > 1)
        usage_error(cat("eval: --depths: '", d, "' is not a depth in [0, 1]"));
      opt.depths.push_back(x);
    }
  }
  opt.samples = a.number("eval", "--samples", opt.samples);
  opt.seed = static_cast<uint64_t>(a.number("eval", "--seed", static_cast<int64_t>(opt.seed)));
  opt.out_json = a.get("--out");
  opt.corpus = a.get("--corpus");
  opt.tokenizer = a.get("--tokenizer");
  return run_eval(opt);
}

// A corpus: its size, vocabulary and fingerprint, its documents by length (powers of two) and
// its buckets when it was decomposed.
int inspect_corpus(const std::string& path) {
  const Corpus corpus = Corpus::open(path, "inspect");
  const CorpusInfo& info = corpus.info();
  std::printf("corpus %s\n", path.c_str());
  std::printf("%lld tokens | %lld documents | vocabulary %lld (%s, eos %lld) | %s\n",
              static_cast<long long>(info.num_tokens), static_cast<long long>(info.num_docs),
              static_cast<long long>(info.vocab_size), info.tokenizer.c_str(),
              static_cast<long long>(info.eos_id), info.fingerprint.c_str());
  // Documents by length: bin k holds lengths in [2^k, 2^(k+1)).
  std::map<int, std::pair<int64_t, int64_t>> bins;  // k -> documents, tokens
  const std::vector<uint64_t> offsets = corpus.doc_offsets();
  for (size_t d = 0; d + 1 < offsets.size(); ++d) {
    const uint64_t n = offsets[d + 1] - offsets[d];
    auto& bin = bins[n ? std::bit_width(n) - 1 : 0];
    ++bin.first;
    bin.second += static_cast<int64_t>(n);
  }
  std::printf("document length      documents          tokens    share\n");
  for (const auto& [k, bin] : bins)
    std::printf("  %9lld..%-9lld %9lld %15lld  %6.2f%%\n", 1LL << k, (1LL << (k + 1)) - 1,
                static_cast<long long>(bin.first), static_cast<long long>(bin.second),
                100.0 * static_cast<double>(bin.second) / static_cast<double>(info.num_tokens));
  if (h5::File::open_read(path).exists("/buckets")) {
    const Buckets buckets = read_buckets(path, "inspect", info.num_tokens);
    std::printf("buckets 2^%d..2^%d (data decompose)\n%s", buckets.min_log2, buckets.max_log2,
                bucket_table(buckets).c_str());
  } else {
    std::printf("no buckets (ringtrain data decompose %s --min-len N --max-len M makes them)\n",
                path.c_str());
  }
  return 0;
}

int cmd_inspect(const std::vector<std::string>& args) {
  if (args.size() != 1) usage_error("inspect takes one checkpoint or corpus file");
  {
    bool corpus = false;
    try {
      const h5::File f = h5::File::open_read(args[0]);
      corpus = f.has_attr("/", "format") && f.attr_string("/", "format") == kCorpusFormat;
    } catch (const std::exception&) {
      // not readable HDF5: the checkpoint reader says so in its words
    }
    if (corpus) return inspect_corpus(args[0]);
  }
  std::vector<CheckpointParam> params;
  const CheckpointState s = read_checkpoint_state(args[0], &params);
  uint64_t total = 0;
  for (const auto& p : params) {
    uint64_t n = 1;
    for (auto d : p.shape) n *= d;
    total += n;
  }
  std::printf("checkpoint %s\n", args[0].c_str());
  std::printf("step %lld | tokens seen %lld | written by dp %lld x sp %lld | seed %lld | data %s\n",
              static_cast<long long>(s.step), static_cast<long long>(s.tokens_seen),
              static_cast<long long>(s.dp), static_cast<long long>(s.sp),
              static_cast<long long>(s.seed), s.data_mode.c_str());
  std::printf("corpus fingerprint %s\n", s.corpus_fingerprint.c_str());
  std::printf("parameters: %zu tensors, %llu values\n", params.size(),
              static_cast<unsigned long long>(total));
  for (const auto& p : params) {
    std::string shape;
    for (size_t i = 0; i < p.shape.size(); ++i)
      shape += (i ? " x " : "") + std::to_string(p.shape[i]);
    std::printf("  %-32s %s\n", p.name.c_str(), shape.c_str());
  }
  std::printf("recipe:\n%s", s.recipe_yaml.c_str());
  return 0;
}

int cmd_op(const std::vector<std::string>& args) {
  std::string name, in, out;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--in" || args[i] == "--out") && i + 1 < args.size()) {
      (args[i] == "--in" ? in : out) = args[i + 1];
      ++i;
    } else if (args[i].rfind("--", 0) == 0) {
      usage_error(cat("op: unknown option '", args[i], "' (valid: --in FILE, --out FILE)"));
    } else if (name.empty()) {
      name = args[i];
    } else {
      usage_error(cat("op: a second op name '", args[i], "'"));
    }
  }
  if (name.empty() || in.empty() || out.empty())
    usage_error("op: expected NAME --in IN.h5 --out OUT.h5");
  return run_op(name, in, out);
}

// "1,2,3" as token ids (a usage error naming the command otherwise).
std::vector<int32_t> token_ids(const std::string& command, const std::string& text) {
  std::vector<int32_t> ids;
  for (const std::string& t : split_commas(text)) {
    char* end = nullptr;
    const long long id = std::strtoll(t.c_str(), &end, 10);
    if (end == t.c_str() || *end != '\0' || id < 0 || id > INT32_MAX)
      usage_error(cat(command, ": --tokens: '", t, "' is not a token id"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

int cmd_convert(const std::vector<std::string>& raw) {
  const Args a("convert", raw, {"--dtype", "--shard-size"});
  if (a.positional.size() != 2)
    usage_error("convert: expected HF_DIR OUT.h5 (import) or CHECKPOINT.h5 OUT_DIR (export)");
  ConvertOptions opt;
  opt.from = a.positional[0];
  opt.to = a.positional[1];
  const std::string dtype = a.get("--dtype", "f32");
  if (dtype != "f32" && dtype != "bf16")
    usage_error(cat("convert: --dtype '", dtype, "' is not one of f32, bf16"));
  opt.dtype = dtype == "bf16" ? StDType::BF16 : StDType::F32;
  const int64_t shard = a.number("convert", "--shard-size", static_cast<int64_t>(opt.shard_bytes));
  if (shard < 1) usage_error("convert: --shard-size must be at least 1 byte");
  opt.shard_bytes = static_cast<uint64_t>(shard);
  return run_convert(opt);
}

int cmd_logits(const std::vector<std::string>& raw) {
  const Args a("logits", raw, {"--tokens", "--out"});
  if (a.positional.size() != 1) usage_error("logits: expected one CHECKPOINT.h5");
  LogitsOptions opt;
  opt.checkpoint = a.positional[0];
  opt.out_npy = a.get("--out");
  opt.tokens = token_ids("logits", a.get("--tokens"));
  return run_logits(opt);
}

int cmd_generate(const std::vector<std::string>& raw) {
  const Args a(
      "generate", raw,
      {"--prompt", "--tokens", "--tokenizer", "--max-new", "--temperature", "--top-p", "--seed"});
  if (a.positional.size() != 1) usage_error("generate: expected one CHECKPOINT.h5");
  GenerateOptions opt;
  opt.checkpoint = a.positional[0];
  opt.prompt = a.get("--prompt");
  opt.tokenizer = a.get("--tokenizer");
  opt.tokens = token_ids("generate", a.get("--tokens"));
  if (opt.prompt.empty() == opt.tokens.empty())
    usage_error("generate: give one of --prompt TEXT and --tokens 1,2,3");
  opt.max_new = a.number("generate", "--max-new", opt.max_new);
  if (opt.max_new < 1) usage_error("generate: --max-new must be at least 1");
  auto real = [&](const char* key, double fallback, double lo, double hi) {
    const std::string v = a.get(key);
    if (v.empty()) return fallback;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !(x >= lo && x <= hi))
      usage_error(cat("generate: ", key, " '", v, "' is not a number in [", lo, ", ", hi, "]"));
    return x;
  };
  opt.temperature = real("--temperature", opt.temperature, 0.0, 100.0);
  opt.top_p = real("--top-p", opt.top_p, 1e-6, 1.0);
  opt.seed = static_cast<uint64_t>(a.number("generate", "--seed", static_cast<int64_t>(opt.seed)));
  return run_generate(opt);
}

int dispatch(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, stdout);
    return args.empty() ? kExitUserError : 0;
  }
  if (args[0] == "--version") {
    if (cuda_compiled()) {
      const int gpus = cuda_device_count();
      std::printf("ringtrain 0.1.0 (CUDA backend built, %d GPU%s visible)\n", gpus,
                  gpus == 1 ? "" : "s");
    } else {
      std::printf("ringtrain 0.1.0 (CUDA backend not built)\n");
    }
    return 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "train") return cmd_train(rest);
  if (args[0] == "inspect") return cmd_inspect(rest);
  if (args[0] == "op") return cmd_op(rest);
  if (args[0] == "eval") return cmd_eval(rest);
  if (args[0] == "convert") return cmd_convert(rest);
  if (args[0] == "logits") return cmd_logits(rest);
  if (args[0] == "generate") return cmd_generate(rest);
  if (args[0] == "data") {
    const std::vector<std::string> more(rest.empty() ? rest.end() : rest.begin() + 1, rest.end());
    if (!rest.empty() && rest[0] == "import") return cmd_data_import(more);
    if (!rest.empty() && rest[0] == "decompose") return cmd_data_decompose(more);
    if (!rest.empty() && rest[0] == "synth") return cmd_data_synth(more);
    usage_error("data: expected 'data import', 'data decompose' or 'data synth'");
  }
  usage_error(cat("unknown command '", args[0],
                  "' (valid: train, data, eval, inspect, convert, logits, generate, op)"));
}

}  // namespace
}  // namespace rt

int main(int argc, char** argv) {
  using namespace rt;
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return dispatch(args);
  } catch (const AgreedError& e) {
    // Every rank holds the same error: one of them says it.
    if (process_rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code;
  } catch (const std::exception& e) {
    // Only this rank failed: say which, and take the others down rather than let them wait.
    const int code = exit_code_of(e);
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s%s\n",
                 process_rank() > 0 ? cat("rank ", process_rank(), ": ").c_str() : "",
                 message_of(e).c_str());
    abort_job_if_parallel(code);
    return code;
  }
}
