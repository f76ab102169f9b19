// Token embedding lookup and its scatter-add backward on the GPU.
//   out [T, C] = table [V, C] rows picked by tokens [T]; dtable [V, C] += scatter of dout.
// Backward: a thread per channel walks the tokens in order, so a repeated token's rows are
// summed in one fixed order: deterministic without float atomics (as on the CPU).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* table,
                                         int64_t T, int64_t C) {
  RT_GRID_STRIDE(i, T * C) out[i] = table[static_cast<int64_t>(tokens[i / C]) * C + i % C];
}

__global__ void embedding_backward_kernel(float* dtable, const int32_t* tokens, const float* dout,
                                          int64_t T, int64_t C) {
  RT_GRID_STRIDE(c, C) {
    for (int64_t t = 0; t < T; ++t)
      dtable[static_cast<int64_t>(tokens[t]) * C + c] += dout[t * C + c];
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t T,
                       int64_t C) {
  embedding_forward_kernel<<<blocks_for(T * C), kThreads, 0, compute_stream()>>>(out, tokens, table,
                                                                                 T, C);
  RT_CUDA_LAUNCHED();
}

void embedding_backward(float* dtable, const int32_t* tokens, const float* dout, int64_t T,
                        int64_t C) {
  embedding_backward_kernel<<<blocks_for(C, 128), 128, 0, compute_stream()>>>(dtable, tokens, dout,
                                                                              T, C);
  RT_CUDA_LAUNCHED();
}

}  // namespace rt::cuda
