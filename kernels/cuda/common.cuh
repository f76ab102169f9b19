// What every CUDA kernel file shares: error checks that name the call and the file:line, the
// stream the kernels run on, launch sizes, scratch memory and warp/block reductions.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.h"
#include "kernels/host_device.h"

namespace rt::cuda {

// A failed CUDA call is not the user's fault and leaves the device unusable: RunError, exit 1.
void fail_cuda(cudaError_t e, const char* call, const char* file, int line);
#define RT_CUDA(call)                                                 \
  do {                                                                \
    cudaError_t rt_cuda_err_ = (call);                                \
    if (rt_cuda_err_ != cudaSuccess)                                  \
      ::rt::cuda::fail_cuda(rt_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)
// After a launch: a bad configuration shows up here, a fault in the kernel at the next sync.
#define RT_CUDA_LAUNCHED() RT_CUDA(cudaGetLastError())

// The stream every op runs on. Communication gets streams of its own (parallel/nccl_comm).
cudaStream_t compute_stream();
// Waits for the compute stream: before a result is read on the host.
void sync_compute();

RT_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never zero.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = ceil_div(n, threads);
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Device memory for the length of one op, from the stream-ordered pool (cudaMallocAsync), so
// that a kernel's scratch costs no device-wide synchronisation.
class Scratch {
 public:
  explicit Scratch(size_t bytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

// Sums over rows run in fixed blocks of kRowBlock rows: each block's partial sums land in
// partial[blocks, C], then add_block_partials adds them into dst[C] in block order, so the
// bits do not depend on the launch. (elementwise.cu)
constexpr int64_t kRowBlock = 256;
void add_block_partials(float* dst, const float* partial, int64_t blocks, int64_t C);
// Both add the partials in double and the sum to dst once, as the CPU does
// (kernels/cpu/block_sums.h): the rounding does not grow with the number of blocks.
void add_block_partials(float* dst, const double* partial, int64_t blocks, int64_t C);
// sum of values[0..n) (device memory), added in index order on the host after the compute
// stream has finished: the deterministic double sums of sum_squares and the LM-head loss.
double sum_in_order(const double* values, int64_t n);

#ifdef __CUDACC__
// The activations' math, shared by the kernels that use it (the GPU's fast exp).
__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }
// log(1 + e^x) without overflow; its derivative is sigmoid(x).
__device__ inline float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(__expf(-fabsf(x))); }

template <class T>
__device__ inline T warp_sum(T v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
// Sum over the block, in a fixed order (same bits every run); every thread gets the result.
// `shared` holds 32 values; blockDim.x is a multiple of 32.
template <class T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}
__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float m = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(m);
}
// Launches a grid-stride kernel over n elements on the compute stream and checks the launch.
template <class Kernel, class... Args>
void launch(Kernel kernel, int64_t n, Args... args) {
  kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(args...);
  RT_CUDA_LAUNCHED();
}
#define RT_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)
#endif

}  // namespace rt::cuda
