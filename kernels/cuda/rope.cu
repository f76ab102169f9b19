// Rotary position embedding on the GPU, rotate-half convention (as kernels/cpu/rope.cpp):
//   table [T, D/2, 2] = (cos, sin) of positions[t] * inv_freq[i] (kernels/rope_frequencies.h,
//   times the attention factor), angles in double so that
//   positions near 2^20 keep their precision; x [T, heads, D] rotated in place.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

__global__ void rope_table_kernel(float* table, const int32_t* positions, int64_t T, int64_t D,
                                  RopeFrequencies freq) {
  const int64_t half = D / 2;
  RT_GRID_STRIDE(e, T * half) {
    const int64_t t = e / half, i = e % half;
    const double angle = static_cast<double>(positions[t]) * rope_inv_freq(freq, i, D);
    table[e * 2 + 0] = static_cast<float>(freq.attention_factor * cos(angle));
    table[e * 2 + 1] = static_cast<float>(freq.attention_factor * sin(angle));
  }
}

__global__ void rope_rotate_kernel(float* x, const float* table, int64_t T, int64_t heads,
                                   int64_t D, float sign) {
  const int64_t half = D / 2;
  RT_GRID_STRIDE(e, T * heads * half) {
    const int64_t i = e % half, row = e / half, t = row / heads;
    const float c = table[(t * half + i) * 2], s = sign * table[(t * half + i) * 2 + 1];
    float* a = x + row * D;
    const float x1 = a[i], x2 = a[i + half];
    a[i] = x1 * c - x2 * s;
    a[i + half] = x2 * c + x1 * s;
  }
}

}  // namespace

void rope_table(float* table, const int32_t* positions, int64_t T, int64_t D,
                const RopeFrequencies& freq) {
  rope_table_kernel<<<blocks_for(T * (D / 2)), kThreads, 0, compute_stream()>>>(table, positions, T,
                                                                                D, freq);
  RT_CUDA_LAUNCHED();
}

void rope_rotate(float* x, const float* table, int64_t T, int64_t heads, int64_t D, bool inverse) {
  rope_rotate_kernel<<<blocks_for(T * heads * (D / 2)), kThreads, 0, compute_stream()>>>(
      x, table, T, heads, D, inverse ? -1.0f : 1.0f);
  RT_CUDA_LAUNCHED();
}

}  // namespace rt::cuda
