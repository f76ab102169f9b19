// LM head fused with cross entropy, in token blocks (the [T, V] logits never exist).
//   h [T, C], weight [V, C], targets [T] (i32, < 0 = ignored), dh [T, C], dweight [V, C]
// Per block of rows: logits = h W^T; lse per row; loss = lse - logit[target];
// backward in the same pass: dlogits = grad_scale * (softmax - onehot), dh = dlogits W,
// dW += dlogits^T h. One pass gives loss and gradients because the loss ends the graph.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

double lm_head_loss(const float* h, const float* weight, const int32_t* targets, float* dh,
                    float* dweight, float grad_scale, float* token_losses, int64_t T, int64_t C,
                    int64_t V) {
  // About 16 MiB of logits per block.
  const int64_t block = std::clamp<int64_t>((int64_t(4) << 20) / std::max<int64_t>(V, 1), 64, 2048);
  std::vector<float> logits(static_cast<size_t>(std::min(block, T) * V));
  std::vector<double> row_loss(static_cast<size_t>(std::min(block, T)));
  const bool backward = dh != nullptr;
  double total = 0.0;

  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t bt = std::min(block, T - t0);
    gemm(false, true, bt, V, C, 1.0f, h + t0 * C, C, weight, C, 0.0f, logits.data(), V);
#pragma omp parallel for schedule(static) if (bt * V > (1 << 15))
    for (int64_t r = 0; r < bt; ++r) {
      float* row = logits.data() + r * V;
      const int32_t target = targets[t0 + r];
      if (target < 0) {
        row_loss[r] = 0.0;
        if (backward) std::fill(row, row + V, 0.0f);
        continue;
      }
      float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t c = 0; c < V; ++c) mx = std::max(mx, row[c]);
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < V; ++c) sum += fast_exp(row[c] - mx);
      const float lse = mx + std::log(sum);
      row_loss[r] = static_cast<double>(lse) - row[target];
      if (backward) {
#pragma omp simd
        for (int64_t c = 0; c < V; ++c) row[c] = fast_exp(row[c] - lse) * grad_scale;
        row[target] -= grad_scale;
      }
    }
    for (int64_t r = 0; r < bt; ++r) {
      total += row_loss[r];
      if (token_losses) token_losses[t0 + r] = static_cast<float>(row_loss[r]);
    }
    if (backward) {
      gemm(false, false, bt, C, V, 1.0f, logits.data(), V, weight, C, 0.0f, dh + t0 * C, C);
      gemm(true, false, V, C, bt, 1.0f, logits.data(), V, h + t0 * C, C, 1.0f, dweight, C);
    }
  }
  return total;
}

void lm_head_argmax(int32_t* out, const float* h, const float* weight, int64_t T, int64_t C,
                    int64_t V) {
  const int64_t block = std::clamp<int64_t>((int64_t(4) << 20) / std::max<int64_t>(V, 1), 64, 2048);
  std::vector<float> logits(static_cast<size_t>(std::min(block, T) * V));
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t bt = std::min(block, T - t0);
    gemm(false, true, bt, V, C, 1.0f, h + t0 * C, C, weight, C, 0.0f, logits.data(), V);
    for (int64_t r = 0; r < bt; ++r) {
      const float* row = logits.data() + r * V;
      out[t0 + r] = static_cast<int32_t>(std::max_element(row, row + V) - row);
    }
  }
}

}  // namespace rt::cpu
