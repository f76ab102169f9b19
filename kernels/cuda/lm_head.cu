// LM head fused with cross entropy on the GPU, in token blocks (as kernels/cpu/lm_head.cpp):
//   h [T, C], weight [V, C], targets [T] (i32, < 0 = ignored), dh [T, C], dweight [V, C]
// Per block of rows: logits = h W^T (cuBLASLt) into scratch; a thread block per row finds
// the max and the log-sum-exp, writes the row's loss, and turns the row into
// grad_scale * (softmax - onehot) in place; then dh = dlogits W and dW += dlogits^T h.
// The row losses stay on the device in double and are summed in row order (sum_in_order).
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

// About 64 MiB of logits per block: fewer, larger GEMMs than the CPU's cache-sized blocks.
int64_t rows_per_block(int64_t V) {
  return std::clamp<int64_t>((int64_t(16) << 20) / std::max<int64_t>(V, 1), 64, 8192);
}

__global__ void softmax_loss_kernel(float* logits, double* row_loss, float* token_losses,
                                    const int32_t* targets, int64_t V, float grad_scale,
                                    bool backward) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  float* row = logits + r * V;
  const int32_t target = targets[r];
  if (target < 0) {
    if (backward)
      for (int64_t c = threadIdx.x; c < V; c += blockDim.x) row[c] = 0.0f;
    if (threadIdx.x == 0) {
      row_loss[r] = 0.0;
      if (token_losses) token_losses[r] = 0.0f;
    }
    return;
  }
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, row[c]);
  mx = block_max(mx, shared);
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) sum += __expf(row[c] - mx);
  sum = block_sum(sum, shared);
  const float lse = mx + logf(sum);
  const float target_logit = row[target];
  __syncthreads();  // every thread has read row[target] before it is overwritten
  if (threadIdx.x == 0) {
    const double loss = static_cast<double>(lse) - target_logit;
    row_loss[r] = loss;
    if (token_losses) token_losses[r] = static_cast<float>(loss);
  }
  if (backward) {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
      float d = __expf(row[c] - lse) * grad_scale;
      if (c == target) d -= grad_scale;
      row[c] = d;
    }
  }
}

// First index of the largest value, as std::max_element.
__global__ void argmax_kernel(int32_t* out, const float* logits, int64_t V) {
  __shared__ float best_value[kThreads];
  __shared__ int64_t best_index[kThreads];
  const float* row = logits + int64_t(blockIdx.x) * V;
  float bv = -INFINITY;
  int64_t bi = V;                                        // no index yet: loses every comparison
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x)  // c rises: ">" keeps the first
    if (bi == V || row[c] > bv) bv = row[c], bi = c;
  best_value[threadIdx.x] = bv;
  best_index[threadIdx.x] = bi;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float ov = best_value[threadIdx.x + stride];
      const int64_t oi = best_index[threadIdx.x + stride];
      const float mv = best_value[threadIdx.x];
      const int64_t mi = best_index[threadIdx.x];
      const bool take = oi != V && (mi == V || ov > mv || (ov == mv && oi < mi));
      if (take) best_value[threadIdx.x] = ov, best_index[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(best_index[0]);
}

}  // namespace

double lm_head_loss(const float* h, const float* weight, const int32_t* targets, float* dh,
                    float* dweight, float grad_scale, float* token_losses, int64_t T, int64_t C,
                    int64_t V) {
  if (T == 0) return 0.0;
  const int64_t block = std::min(rows_per_block(V), T);
  Scratch logits(block * V * sizeof(float));
  Scratch row_loss(T * sizeof(double));
  const bool backward = dh != nullptr;
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t bt = std::min(block, T - t0);
    gemm(false, true, bt, V, C, 1.0f, h + t0 * C, C, weight, C, 0.0f, logits.as<float>(), V);
    softmax_loss_kernel<<<static_cast<unsigned>(bt), kThreads, 0, compute_stream()>>>(
        logits.as<float>(), row_loss.as<double>() + t0, token_losses ? token_losses + t0 : nullptr,
        targets + t0, V, grad_scale, backward);
    RT_CUDA_LAUNCHED();
    if (backward) {
      gemm(false, false, bt, C, V, 1.0f, logits.as<float>(), V, weight, C, 0.0f, dh + t0 * C, C);
      gemm(true, false, V, C, bt, 1.0f, logits.as<float>(), V, h + t0 * C, C, 1.0f, dweight, C);
    }
  }
  return sum_in_order(row_loss.as<double>(), T);
}

void lm_head_argmax(int32_t* out, const float* h, const float* weight, int64_t T, int64_t C,
                    int64_t V) {
  if (T == 0) return;
  const int64_t block = std::min(rows_per_block(V), T);
  Scratch logits(block * V * sizeof(float));
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t bt = std::min(block, T - t0);
    gemm(false, true, bt, V, C, 1.0f, h + t0 * C, C, weight, C, 0.0f, logits.as<float>(), V);
    argmax_kernel<<<static_cast<unsigned>(bt), kThreads, 0, compute_stream()>>>(
        out + t0, logits.as<float>(), V);
    RT_CUDA_LAUNCHED();
  }
}

}  // namespace rt::cuda
