// One training step of a hybrid model (default pattern "M-G-*-": Mamba-2, GLA, attention,
// each followed by a SwiGLU MLP) on one sequence, timed: the ringtrain side of
// bench/hybrid_vs_torch.sh, whose PyTorch side (bench/hybrid_torch.py) builds the same model.
//
//   bench_hybrid_step [--pattern M-G-*-] [--d-model 512] [--heads 4] [--kv-heads 0]
//                     [--gla-heads 0] [--mamba-d-state 64] [--mamba-headdim 64]
//                     [--mamba-expand 2] [--mamba-ngroups 1] [--chunk 64] [--vocab 258]
//                     [--untied 0|1] [--seq-len 4096] [--steps 3] [--lr 3e-4] [--seed 1]
//                     [--recompute 0|1] [--dump-params FILE]
//
// Model keys and defaults are the recipe's (model/config.h): heads 4, kv_heads = heads, GLA
// heads = heads, Mamba-2 d_state 64, headdim 64, expand 2, one group, chunk 64, vocabulary 258,
// tied embeddings; init as Model::init_weights(seed). One step is the trainer's own
// (trainer/train_step.h): zero grads + forward + backward (one micro-batch of seq_len tokens,
// loss = mean over tokens) + global grad norm + clip to 1.0 + AdamW (the recipe's optim defaults:
// betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices) at a constant lr. Step 0 is a warm-up
// (first touch of the arena and the thread pools) and is not timed; its loss is the initial loss.
// Tokens: (t * 7919) % 256, targets (t * 7919 + 13) % 256, positions 0..seq_len-1.
//
// --dump-params FILE writes the initial parameters, so that hybrid_torch.py can start from the
// same weights: text lines "RTPARAMS 1", "<count>", then per parameter
// "<name> <decay 0|1> <ndim> <dims...>", then "DATA", then every parameter's float32 values
// (little-endian) in that order.
//
// Output: the configuration, one line per step (loss, grad norm, ms), and one line
//   RESULT impl=ringtrain params=N loss0=X tokens=T tokens_per_s=Y ms_per_step=Z (median) ...
//          model_gflop=F sgemm_gflops=S mfu_pct=M (model FLOPs per step against sgemm measured
//          here)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "kernels/device.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

namespace rt {
namespace {

struct Args {
  ModelConfig cfg;
  int64_t seq_len = 4096, steps = 3;
  double lr = 3e-4;
  uint64_t seed = 1;
  bool recompute = false;
  std::string dump;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "bench_hybrid_step: %s\n", why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  a.cfg.pattern = "M-G-*-";
  a.cfg.d_model = 512;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("option " + k + " needs a value");
    const std::string v = argv[i + 1];
    const auto num = [&] { return static_cast<int64_t>(std::atoll(v.c_str())); };
    if (k == "--pattern")
      a.cfg.pattern = v;
    else if (k == "--d-model")
      a.cfg.d_model = num();
    else if (k == "--heads")
      a.cfg.heads = num();
    else if (k == "--kv-heads")
      a.cfg.kv_heads = num();
    else if (k == "--gla-heads")
      a.cfg.gla_heads = num();
    else if (k == "--mamba-d-state")
      a.cfg.mamba_d_state = num();
    else if (k == "--mamba-headdim")
      a.cfg.mamba_headdim = num();
    else if (k == "--mamba-expand")
      a.cfg.mamba_expand = num();
    else if (k == "--mamba-ngroups")
      a.cfg.mamba_ngroups = num();
    else if (k == "--chunk")
      a.cfg.glr_chunk = num();
    else if (k == "--vocab")
      a.cfg.vocab_size = num();
    else if (k == "--untied")
      a.cfg.tied_embeddings = v == "0";
    else if (k == "--seq-len")
      a.seq_len = num();
    else if (k == "--steps")
      a.steps = num();
    else if (k == "--lr")
      a.lr = std::atof(v.c_str());
    else if (k == "--seed")
      a.seed = static_cast<uint64_t>(num());
    else if (k == "--recompute")
      a.recompute = v != "0";
    else if (k == "--dump-params")
      a.dump = v;
    else
      usage("unknown option " + k);
  }
  a.cfg.resolve();
  if (a.steps < 1 || a.seq_len < 2) usage("--steps >= 1 and --seq-len >= 2 expected");
  if (a.cfg.vocab_size < 256) usage("--vocab must cover the 256 byte tokens");
  const ModelConfig& c = a.cfg;
  if (c.d_model % c.heads || c.heads % c.kv_heads || c.head_dim % 2 ||
      c.gla_key_dim() % c.gla_heads || c.gla_value_dim() % c.gla_heads ||
      c.mamba_d_inner() % c.mamba_headdim || c.mamba_heads() % c.mamba_ngroups ||
      c.glr_chunk < 16 || c.glr_chunk > 256)
    usage("the model shape does not divide (see the model.* checks of trainer/recipe.cpp)");
  return a;
}

void dump_params(const std::string& path, const ParameterSet& params) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) usage("cannot write " + path);
  std::fprintf(f, "RTPARAMS 1\n%zu\n", params.all().size());
  for (const Parameter& p : params.all()) {
    std::fprintf(f, "%s %d %d", p.name.c_str(), p.decay ? 1 : 0, p.shape.ndim);
    for (int i = 0; i < p.shape.ndim; ++i)
      std::fprintf(f, " %lld", static_cast<long long>(p.shape[i]));
    std::fprintf(f, "\n");
  }
  std::fprintf(f, "DATA\n");
  for (const Parameter& p : params.all())  // the flat buffer may pad between parameters
    std::fwrite(params.flat_values().f32() + p.offset, sizeof(float),
                static_cast<size_t>(p.shape.numel()), f);
  std::fclose(f);
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  const ModelConfig& cfg = args.cfg;
  const int64_t T = args.seq_len;

  Model model(cfg);
  model.init_weights(args.seed);
  if (!args.dump.empty()) dump_params(args.dump, model.params());
  OptimSection optim_cfg;  // the recipe's defaults
  AdamWOptimizer optim(model.params(), optim_cfg);
  const SequenceLayout layout = SequenceLayout::zigzag(T, 1, 0);
  std::vector<int32_t> tokens(T), targets(T), positions(T);
  for (int64_t t = 0; t < T; ++t) {
    tokens[t] = static_cast<int32_t>((t * 7919) % 256);
    targets[t] = static_cast<int32_t>((t * 7919 + 13) % 256);
    positions[t] = static_cast<int32_t>(t);
  }
  Batch batch;
  batch.tokens = Tensor::wrap(tokens.data(), {T}, DType::I32);
  batch.targets = Tensor::wrap(targets.data(), {T}, DType::I32);
  batch.positions = Tensor::wrap(positions.data(), {T}, DType::I32);
  batch.seq = {&layout, 1, nullptr};
  Arena arena;
  auto world = mpi_world();  // one rank: the trainer's step reduces over it
  TrainStep train(model, optim, *world, *world, arena, args.recompute, optim_cfg.grad_clip);
  const StepInput input{{batch}, T};

  std::printf(
      "ringtrain: pattern %s d_model %lld heads %lld kv_heads %lld head_dim %lld mlp_hidden %lld "
      "gla_heads %lld (dk %lld dv %lld) mamba heads %lld x %lld d_state %lld groups %lld "
      "conv %lld chunk %lld vocab %lld %s, seq_len %lld, %d threads\n",
      cfg.pattern.c_str(), (long long)cfg.d_model, (long long)cfg.heads, (long long)cfg.kv_heads,
      (long long)cfg.head_dim, (long long)cfg.mlp_hidden, (long long)cfg.gla_heads,
      (long long)(cfg.gla_key_dim() / cfg.gla_heads),
      (long long)(cfg.gla_value_dim() / cfg.gla_heads), (long long)cfg.mamba_heads(),
      (long long)cfg.mamba_headdim, (long long)cfg.mamba_d_state, (long long)cfg.mamba_ngroups,
      (long long)cfg.mamba_conv_width, (long long)cfg.glr_chunk, (long long)cfg.vocab_size,
      cfg.tied_embeddings ? "tied" : "untied", (long long)T, cpu_threads());
  std::printf("ringtrain: params %lld\n", static_cast<long long>(model.num_params()));
  std::fflush(stdout);

  double loss0 = 0;
  std::vector<double> ms;
  for (int64_t step = 0; step <= args.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = train.run(input, step, args.lr);
    const double loss = r.loss, gnorm = r.grad_norm;
    const double elapsed =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (step == 0)
      loss0 = loss;
    else
      ms.push_back(elapsed);
    std::printf("ringtrain: step %lld%s loss %.6f gnorm %.6f %.1f ms\n", (long long)step,
                step == 0 ? " (warm-up)" : "", loss, gnorm, elapsed);
    std::fflush(stdout);
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.size() % 2
                            ? sorted[sorted.size() / 2]
                            : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  double mean = 0;
  for (double m : ms) mean += m / static_cast<double>(ms.size());
  // Model FLOPs (3 x forward, as the trainer's MFU) against the sgemm throughput measured here
  // after the steps: how close to the GEMM limit the step runs, whatever the other side does.
  const double model_gflop = model.flops_per_token(T) * static_cast<double>(T) / 1e9;
  const double sgemm = measure_sgemm_gflops();
  std::printf(
      "RESULT impl=ringtrain params=%lld loss0=%.6f tokens=%lld tokens_per_s=%.1f "
      "ms_per_step=%.1f mean_ms=%.1f min_ms=%.1f steps=%zu arena_MiB=%.1f rss_MiB=%.1f "
      "model_gflop=%.1f sgemm_gflops=%.1f mfu_pct=%.1f\n",
      static_cast<long long>(model.num_params()), loss0, static_cast<long long>(T),
      1e3 * T / median, median, mean, sorted.front(), ms.size(),
      static_cast<double>(arena.peak()) / 1048576.0, peak_rss_mib(), model_gflop, sgemm,
      100.0 * model_gflop / (median / 1e3) / sgemm);
  return 0;
}

}  // namespace
}  // namespace rt

int main(int argc, char** argv) { return rt::run(argc, argv); }
