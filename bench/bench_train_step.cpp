// One training step of the attention+MLP model: the trainer's own step (trainer/train_step.h:
// forward + backward, the reductions over a world of one, gradient norm, finite checks, clip,
// AdamW), against the sgemm throughput measured in the same process.
//   bench_train_step [--benchmark_filter=...]
// Arguments: d_model / seq_len / recompute. Pattern "*-*-*-*-", head dim 64, byte vocab,
// 8192 tokens per step in one micro-batch. MFU = model FLOPs (3x forward, recompute not
// counted) per second / measured sgemm FLOP/s.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "bench/bench_common.h"
#include "kernels/arena.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

namespace rt {
namespace {

double g_sgemm_gflops = 0;
std::unique_ptr<Communicator> g_world;  // one rank
constexpr int64_t kTokensPerStep = 8192;

void BM_TrainStep(benchmark::State& state) {
  ModelConfig cfg;
  cfg.pattern = "*-*-*-*-";
  cfg.d_model = state.range(0);
  cfg.heads = cfg.d_model / 64;
  cfg.resolve();
  const int64_t seq_len = state.range(1);
  const bool recompute = state.range(2) != 0;
  const int64_t n_seqs = kTokensPerStep / seq_len;

  Model model(cfg);
  model.init_weights(1);
  AdamWOptimizer optim(model.params(), OptimSection{});
  SequenceLayout layout = SequenceLayout::zigzag(seq_len, 1, 0);
  std::vector<int32_t> token_ids(kTokensPerStep), targets(kTokensPerStep),
      positions(kTokensPerStep);
  for (int64_t i = 0; i < kTokensPerStep; ++i) {
    token_ids[i] = static_cast<int32_t>((i * 7919) % 256);
    targets[i] = static_cast<int32_t>((i * 7919 + 13) % 256);
    positions[i] = static_cast<int32_t>(i % seq_len);
  }
  Batch batch;
  batch.tokens = Tensor::wrap(token_ids.data(), {kTokensPerStep}, DType::I32);
  batch.targets = Tensor::wrap(targets.data(), {kTokensPerStep}, DType::I32);
  batch.positions = Tensor::wrap(positions.data(), {kTokensPerStep}, DType::I32);
  batch.seq = {&layout, n_seqs, nullptr};
  Arena arena;
  TrainStep train(model, optim, *g_world, *g_world, arena, recompute, /*grad_clip=*/1.0);
  const StepInput input{{batch}, kTokensPerStep};

  int64_t step = 0;
  auto train_step = [&] { train.run(input, step++, 1e-4); };
  train_step();  // warm-up: first-touch page faults of the arena and the thread pools
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    train_step();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double tokens_per_s = static_cast<double>(kTokensPerStep) * state.iterations() / seconds;
  const double gflops = tokens_per_s * model.flops_per_token(seq_len) / 1e9;
  state.counters["tokens_per_s"] = tokens_per_s;
  state.counters["GFLOPs"] = gflops;
  state.counters["MFU_pct"] = 100.0 * gflops / g_sgemm_gflops;
  state.counters["arena_MiB"] = static_cast<double>(arena.peak()) / 1048576.0;
  state.counters["params_M"] = static_cast<double>(model.num_params()) / 1e6;
}

BENCHMARK(BM_TrainStep)
    ->Args({256, 256, 0})
    ->Args({512, 512, 0})
    ->Args({512, 512, 1})
    ->Args({512, 2048, 0})
    ->Args({768, 1024, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
}  // namespace rt

int main(int argc, char** argv) {
  rt::g_world = rt::mpi_world();
  rt::g_sgemm_gflops = rt::measure_sgemm_gflops();
  std::printf("measured sgemm (2048^3, best of 3): %.1f GFLOP/s\n", rt::g_sgemm_gflops);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
