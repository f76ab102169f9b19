#include "bench/bench_common.h"

#include <random>

#include "kernels/ops.h"

namespace rt::bench {

Tensor random_tensor(Shape shape, uint64_t seed, float stddev) {
  Tensor t = Tensor::empty(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return t;
}

void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops_per_iteration * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void BM_Sgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = random_tensor({n, n}, 1), b = random_tensor({n, n}, 2), c = Tensor::empty({n, n});
  for (auto _ : state) ops::matmul(c, a, false, b, true);
  set_flops(state, 2.0 * n * n * n);
}

}  // namespace rt::bench
