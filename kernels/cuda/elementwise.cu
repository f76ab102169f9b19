// Element-wise ops and reductions on the GPU. sum_squares keeps the CPU's contract of a
// deterministic double sum: a fixed grid of double partials, summed in order on the host.
//   x, out, a, b, dst, src: [n] f32 (add_bf16: out and b bf16)
#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#include <vector>

namespace rt::cuda {

namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) { RT_GRID_STRIDE(i, n) x[i] = value; }
__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  RT_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ void add_bf16_kernel(uint16_t* out, const float* a, const uint16_t* b, int64_t n) {
  RT_GRID_STRIDE(i, n) out[i] = f32_to_bf16(a[i] + bf16_to_f32(b[i]));
}
__global__ void accumulate_kernel(float* dst, const float* src, int64_t n) {
  RT_GRID_STRIDE(i, n) dst[i] += src[i];
}
__global__ void scale_kernel(float* x, int64_t n, float factor) {
  RT_GRID_STRIDE(i, n) x[i] *= factor;
}

// The grid of sum_squares depends on n alone (not on the GPU), so the bits do too.
constexpr int kReduceBlocks = 256;

__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double shared[32];
  double s = 0;
  RT_GRID_STRIDE(i, n) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void all_finite_kernel(int* bad, const float* x, int64_t n) {
  int local = 0;
  RT_GRID_STRIDE(i, n) local |= !isfinite(x[i]);
  if (local) atomicOr(bad, 1);
}

template <class T>
__global__ void add_block_partials_kernel(float* dst, const T* partial, int64_t blocks, int64_t C) {
  RT_GRID_STRIDE(c, C) {
    double acc = 0.0;
    for (int64_t b = 0; b < blocks; ++b) acc += partial[b * C + c];
    dst[c] += static_cast<float>(acc);
  }
}

}  // namespace

void add_block_partials(float* dst, const float* partial, int64_t blocks, int64_t C) {
  add_block_partials_kernel<<<blocks_for(C), kThreads, 0, compute_stream()>>>(dst, partial, blocks,
                                                                              C);
  RT_CUDA_LAUNCHED();
}

void add_block_partials(float* dst, const double* partial, int64_t blocks, int64_t C) {
  add_block_partials_kernel<<<blocks_for(C), kThreads, 0, compute_stream()>>>(dst, partial, blocks,
                                                                              C);
  RT_CUDA_LAUNCHED();
}

void fill(float* x, int64_t n, float value) {
  fill_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(x, n, value);
  RT_CUDA_LAUNCHED();
}

void add_bf16(uint16_t* out, const float* a, const uint16_t* b, int64_t n) {
  launch(add_bf16_kernel, n, out, a, b, n);
}

void add(float* out, const float* a, const float* b, int64_t n) {
  add_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(out, a, b, n);
  RT_CUDA_LAUNCHED();
}

void accumulate(float* dst, const float* src, int64_t n) {
  accumulate_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(dst, src, n);
  RT_CUDA_LAUNCHED();
}

void scale(float* x, int64_t n, float factor) {
  scale_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(x, n, factor);
  RT_CUDA_LAUNCHED();
}

double sum_squares(const float* x, int64_t n) {
  const unsigned blocks = std::min<unsigned>(kReduceBlocks, blocks_for(n));
  Scratch partial(blocks * sizeof(double));
  sum_squares_kernel<<<blocks, kThreads, 0, compute_stream()>>>(partial.as<double>(), x, n);
  RT_CUDA_LAUNCHED();
  return sum_in_order(partial.as<double>(), blocks);
}

double sum_in_order(const double* values, int64_t n) {
  std::vector<double> host(static_cast<size_t>(n));
  RT_CUDA(cudaMemcpyAsync(host.data(), values, n * sizeof(double), cudaMemcpyDeviceToHost,
                          compute_stream()));
  sync_compute();
  double total = 0;
  for (double v : host) total += v;
  return total;
}

bool all_finite(const float* x, int64_t n) {
  Scratch bad(sizeof(int));
  RT_CUDA(cudaMemsetAsync(bad.as<int>(), 0, sizeof(int), compute_stream()));
  all_finite_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(bad.as<int>(), x, n);
  RT_CUDA_LAUNCHED();
  int host = 0;
  RT_CUDA(
      cudaMemcpyAsync(&host, bad.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, compute_stream()));
  sync_compute();
  return host == 0;
}

}  // namespace rt::cuda
