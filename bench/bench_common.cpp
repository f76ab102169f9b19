#include "bench/bench_common.h"

#include <random>

#include <cstdlib>
#include <string>

#include "kernels/device.h"
#include "kernels/ops.h"

namespace rt::bench {

Device device() {
  static const Device d = [] {
    const char* env = std::getenv("RINGTRAIN_BENCH_DEVICE");
    if (env && std::string(env) == "cuda") {
      use_cuda_device(0);
      return Device::CUDA;
    }
    return Device::CPU;
  }();
  return d;
}

void sync() { device_synchronize(device()); }

Tensor empty(Shape shape, DType dtype) { return Tensor::empty(shape, dtype, device()); }
Tensor zeros(Shape shape, DType dtype) { return Tensor::zeros(shape, dtype, device()); }

Tensor random_tensor(Shape shape, uint64_t seed, float stddev) {
  Tensor t = Tensor::empty(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return to_device(t, device());
}

void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

void BM_Sgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = random_tensor({n, n}, 1), b = random_tensor({n, n}, 2), c = empty({n, n});
  for (auto _ : state) {
    ops::matmul(c, a, false, b, true);
    sync();
  }
  set_flops(state, 2.0 * n * n * n);
}

}  // namespace rt::bench
