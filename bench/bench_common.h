// Shared parts of the benchmark programs: inputs and the sgemm baseline every figure is
// compared with.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

#include "kernels/tensor.h"

namespace rt::bench {

// Where the benchmarks run: RINGTRAIN_BENCH_DEVICE=cuda puts every tensor on the GPU
// (default cpu). Each timed iteration ends with sync(), so a GPU's queued work is counted.
Device device();
void sync();
Tensor empty(Shape shape, DType dtype = DType::F32);
Tensor zeros(Shape shape, DType dtype = DType::F32);

// N(0, stddev^2) values made on the host, on device().
Tensor random_tensor(Shape shape, uint64_t seed, float stddev = 1.0f);

// Reports counter GFLOP/s = flops per iteration * iterations / real time.
void set_flops(benchmark::State& state, double flops_per_iteration);

// Square sgemm of the given size (state.range(0)) through the same GEMM the kernels use.
void BM_Sgemm(benchmark::State& state);

}  // namespace rt::bench
