// Attention kernel throughput against the machine's measured sgemm throughput.
//   [RINGTRAIN_BENCH_DEVICE=cuda] bench_attention [--benchmark_filter=...]
// Causal attention over one sequence of L tokens, H = 8 heads of D = 64 (kv_heads = 8).
// FLOPs follow FlashAttention's convention: forward 4 * L^2 * D * H / 2 (causal half),
// backward 2.5x the forward (five GEMMs against two).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "bench/bench_common.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"

namespace rt {
namespace {

constexpr int64_t kHeads = 8, kHeadDim = 64;

double causal_forward_flops(int64_t L) { return 4.0 * L * L * kHeadDim * kHeads / 2.0; }

struct AttentionInputs {
  explicit AttentionInputs(int64_t L)
      : q(bench::random_tensor({L, kHeads, kHeadDim}, 1)),
        k(bench::random_tensor({L, kHeads, kHeadDim}, 2)),
        v(bench::random_tensor({L, kHeads, kHeadDim}, 3)),
        dout(bench::random_tensor({L, kHeads, kHeadDim}, 4)),
        out(bench::empty({L, kHeads, kHeadDim})),
        lse(bench::empty({L, kHeads})),
        delta(bench::empty({L, kHeads})),
        dq(bench::zeros(q.shape())),
        dk(bench::zeros(k.shape())),
        dv(bench::zeros(v.shape())) {}
  Tensor q, k, v, dout, out, lse, delta, dq, dk, dv;
};

void BM_AttentionForward(benchmark::State& state) {
  const int64_t L = state.range(0);
  AttentionInputs in(L);
  for (auto _ : state) {
    ops::attention_block_forward(in.out, in.lse, in.q, in.k, in.v, 0, 0, ops::Mask::Causal);
    bench::sync();
  }
  bench::set_flops(state, causal_forward_flops(L));
}

void BM_AttentionBackward(benchmark::State& state) {
  const int64_t L = state.range(0);
  AttentionInputs in(L);
  ops::attention_block_forward(in.out, in.lse, in.q, in.k, in.v, 0, 0, ops::Mask::Causal);
  for (auto _ : state) {
    ops::attention_backward_delta(in.delta, in.dout, in.out);
    ops::attention_block_backward(in.dq, in.dk, in.dv, in.q, in.k, in.v, in.dout, in.lse, in.delta,
                                  0, 0, ops::Mask::Causal);
    bench::sync();
  }
  bench::set_flops(state, 2.5 * causal_forward_flops(L));
}

void BM_AttentionForwardBackward(benchmark::State& state) {
  const int64_t L = state.range(0);
  AttentionInputs in(L);
  for (auto _ : state) {
    ops::attention_block_forward(in.out, in.lse, in.q, in.k, in.v, 0, 0, ops::Mask::Causal);
    ops::attention_backward_delta(in.delta, in.dout, in.out);
    ops::attention_block_backward(in.dq, in.dk, in.dv, in.q, in.k, in.v, in.dout, in.lse, in.delta,
                                  0, 0, ops::Mask::Causal);
    bench::sync();
  }
  bench::set_flops(state, 3.5 * causal_forward_flops(L));
}

#define ATTENTION_SIZES ->Arg(1024)->Arg(2048)->Arg(4096)->Arg(8192)->Arg(16384)
BENCHMARK(bench::BM_Sgemm)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionForward) ATTENTION_SIZES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionBackward) ATTENTION_SIZES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionForwardBackward)
ATTENTION_SIZES->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace rt

// RINGTRAIN_ATTENTION_TILES=Q,K overrides the kernel's tile sizes (for tuning).
int main(int argc, char** argv) {
  if (const char* tiles = std::getenv("RINGTRAIN_ATTENTION_TILES")) {
    long q = 0, k = 0;
    if (std::sscanf(tiles, "%ld,%ld", &q, &k) == 2 && q > 0 && k > 0)
      rt::cpu::attention_tiles() = {q, k};
  }
  std::printf("attention tiles: %lld x %lld\n",
              static_cast<long long>(rt::cpu::attention_tiles().q),
              static_cast<long long>(rt::cpu::attention_tiles().k));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
