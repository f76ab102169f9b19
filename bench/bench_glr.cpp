// The chunked gated linear recurrence, forward + backward, from 1K to 1M tokens, both decay
// kinds, against the sgemm throughput measured in the same run.
//   [RINGTRAIN_BENCH_DEVICE=cuda] bench_glr [--benchmark_filter=...]
// GLA-shaped: per-channel decay, 2 heads, dk 64, dv 128. Mamba-2-shaped: one decay per head,
// 4 heads of dv 64 sharing B and C (1 group), d_state 64. Chunk 64.
// FLOPs per token and head (algorithmic, C = chunk): forward 4 dk dv + C (dk + dv) (inter-chunk,
// state update, intra-chunk scores and values over C/2 earlier tokens on average); backward
// 8 dk dv + C (3 dk + 2 dv) (dv, dq, dk, dS and the recomputed scores).
#include <benchmark/benchmark.h>

#include <cmath>

#include "bench/bench_common.h"
#include "kernels/ops.h"

namespace rt {
namespace {

constexpr int64_t kChunk = 64;

struct Shape3 {
  int64_t H, Hg, dk, dv;
  bool vector_decay;
};

double flops_per_token(const Shape3& s) {
  const double fwd = 4.0 * s.dk * s.dv + kChunk * (s.dk + s.dv);
  const double bwd = 8.0 * s.dk * s.dv + kChunk * (3.0 * s.dk + 2.0 * s.dv);
  return s.H * (fwd + bwd);
}

void run(benchmark::State& state, const Shape3& s) {
  const int64_t T = state.range(0);
  Tensor q = bench::random_tensor({T, s.Hg, s.dk}, 1), k = bench::random_tensor({T, s.Hg, s.dk}, 2),
         v = bench::random_tensor({T, s.H, s.dv}, 3),
         dout = bench::random_tensor({T, s.H, s.dv}, 4);
  Tensor g = s.vector_decay ? bench::empty({T, s.H, s.dk}) : bench::empty({T, s.H});
  ops::fill(g, -0.05f);
  Tensor o = bench::empty({T, s.H, s.dv});
  Tensor states = bench::empty({(T + kChunk - 1) / kChunk + 1, s.H, s.dk, s.dv});
  Tensor dq = bench::empty(q.shape()), dk = bench::empty(k.shape()), dv = bench::empty(v.shape()),
         dg = bench::empty(g.shape());
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.dk));
  auto step = [&] {
    ops::glr_forward(o, Tensor(), states, q, k, v, g, Tensor(), scale, kChunk);
    ops::glr_backward(dq, dk, dv, dg, Tensor(), q, k, v, g, states, dout, Tensor(), scale, kChunk);
    bench::sync();
  };
  // Warm-up: at 1M tokens the single timed iteration would otherwise include the first touch of
  // ~8 GB of fresh outputs (page faults and zeroing), which a training loop pays once.
  step();
  for (auto _ : state) step();
  bench::set_flops(state, flops_per_token(s) * static_cast<double>(T));
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["us/token"] = benchmark::Counter(
      static_cast<double>(T) * 1e-6,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_GlrGla(benchmark::State& state) { run(state, {2, 2, 64, 128, true}); }
void BM_GlrMamba2(benchmark::State& state) { run(state, {4, 1, 64, 64, false}); }

#define GLR_SIZES \
  ->Arg(1 << 10)->Arg(1 << 12)->Arg(1 << 14)->Arg(1 << 16)->Arg(1 << 18)->Arg(1 << 20)
BENCHMARK(bench::BM_Sgemm)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GlrGla) GLR_SIZES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GlrMamba2) GLR_SIZES->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace rt

BENCHMARK_MAIN();
