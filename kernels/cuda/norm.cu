// RMSNorm on the GPU (as kernels/cpu/norm.cpp): out = inp * rstd * weight over each of
// `groups` groups of G = C / groups channels of a row, rstd = 1 / sqrt(mean(inp^2) + eps).
//   inp, out, dinp [T, C]; weight, dweight [C]; rstd [T, groups]; inp f32 or bf16 (the residual
//   stream under run.precision: bf16)
// A warp per (row, group). dweight: partial sums per block of kRowBlock rows, added in order.
#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__device__ inline float value(const float* x, int64_t i) { return x[i]; }
__device__ inline float value(const uint16_t* x, int64_t i) { return bf16_to_f32(x[i]); }

template <class In>
__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const In* inp, const float* weight,
                                       int64_t T, int64_t C, int64_t groups, float eps) {
  const int64_t unit = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (unit >= T * groups) return;
  const int64_t G = C / groups, t = unit / groups, gi = unit % groups;
  const In* x = inp + t * C + gi * G;
  const float* w = weight + gi * G;
  float ss = 0.0f;
  for (int64_t c = lane; c < G; c += 32) ss += value(x, c) * value(x, c);
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(G) + eps);
  if (lane == 0) rstd[unit] = r;
  float* y = out + t * C + gi * G;
  for (int64_t c = lane; c < G; c += 32) y[c] = value(x, c) * r * w[c];
}

// With g = dout * weight: dinp += rstd * g - rstd^3 / G * inp * sum(g * inp)
template <class In>
__global__ void rmsnorm_backward_dinp_kernel(float* dinp, const float* dout, const In* inp,
                                             const float* weight, const float* rstd, int64_t T,
                                             int64_t C, int64_t groups) {
  const int64_t unit = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (unit >= T * groups) return;
  const int64_t G = C / groups, t = unit / groups, c0 = (unit % groups) * G;
  const In* x = inp + t * C + c0;
  const float* dy = dout + t * C + c0;
  const float* w = weight + c0;
  float dot = 0.0f;
  for (int64_t c = lane; c < G; c += 32) dot += dy[c] * w[c] * value(x, c);
  dot = warp_sum(dot);
  const float r = rstd[unit];
  const float k = r * r * r * dot / static_cast<float>(G);
  float* dx = dinp + t * C + c0;
  for (int64_t c = lane; c < G; c += 32) dx[c] += r * dy[c] * w[c] - k * value(x, c);
}

// partial[b, c] = sum over the rows of block b of dout * inp * rstd
template <class In>
__global__ void rmsnorm_dweight_partial_kernel(float* partial, const float* dout, const In* inp,
                                               const float* rstd, int64_t T, int64_t C,
                                               int64_t groups) {
  const int64_t blocks = ceil_div(T, kRowBlock), G = C / groups;
  RT_GRID_STRIDE(e, blocks * C) {
    const int64_t b = e / C, c = e % C, gi = c / G;
    float acc = 0.0f;
    for (int64_t t = b * kRowBlock; t < min(T, (b + 1) * kRowBlock); ++t)
      acc += dout[t * C + c] * value(inp, t * C + c) * rstd[t * groups + gi];
    partial[e] = acc;
  }
}

template <class In>
void rmsnorm_forward_impl(float* out, float* rstd, const In* inp, const float* weight, int64_t T,
                          int64_t C, int64_t groups, float eps) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(T * groups, kWarpsPerBlock));
  if (blocks == 0) return;
  rmsnorm_forward_kernel<<<blocks, kThreads, 0, compute_stream()>>>(out, rstd, inp, weight, T, C,
                                                                    groups, eps);
  RT_CUDA_LAUNCHED();
}

template <class In>
void rmsnorm_backward_impl(float* dinp, float* dweight, const float* dout, const In* inp,
                           const float* weight, const float* rstd, int64_t T, int64_t C,
                           int64_t groups) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(T * groups, kWarpsPerBlock));
  if (blocks == 0) return;
  rmsnorm_backward_dinp_kernel<<<blocks, kThreads, 0, compute_stream()>>>(dinp, dout, inp, weight,
                                                                          rstd, T, C, groups);
  RT_CUDA_LAUNCHED();
  const int64_t row_blocks = ceil_div(T, kRowBlock);
  Scratch partial(row_blocks * C * sizeof(float));
  rmsnorm_dweight_partial_kernel<<<blocks_for(row_blocks * C), kThreads, 0, compute_stream()>>>(
      partial.as<float>(), dout, inp, rstd, T, C, groups);
  RT_CUDA_LAUNCHED();
  add_block_partials(dweight, partial.as<float>(), row_blocks, C);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T,
                     int64_t C, int64_t groups, float eps) {
  rmsnorm_forward_impl(out, rstd, inp, weight, T, C, groups, eps);
}
void rmsnorm_forward(float* out, float* rstd, const uint16_t* inp, const float* weight, int64_t T,
                     int64_t C, int64_t groups, float eps) {
  rmsnorm_forward_impl(out, rstd, inp, weight, T, C, groups, eps);
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t T, int64_t C,
                      int64_t groups) {
  rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, T, C, groups);
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const uint16_t* inp,
                      const float* weight, const float* rstd, int64_t T, int64_t C,
                      int64_t groups) {
  rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, T, C, groups);
}

}  // namespace rt::cuda
