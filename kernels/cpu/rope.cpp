// Rotary position embedding, rotate-half convention (GPT-NeoX / Llama in HF):
// the pair (x[i], x[i + D/2]) at position p is rotated by angle p * inv_freq[i] (and scaled by
// the attention factor; kernels/rope_frequencies.h).
//   table [T, D/2, 2] holds (cos, sin); x [T, heads, D] is rotated in place.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

void rope_table(float* table, const int32_t* positions, int64_t T, int64_t D,
                const RopeFrequencies& freq) {
  const int64_t half = D / 2;
  const double a = freq.attention_factor;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = rope_inv_freq(freq, i, D);
#pragma omp parallel for schedule(static) if (T * half > (1 << 14))
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // double: at position 2^20 an f32 angle would be off by ~0.06 rad
      double angle = static_cast<double>(positions[t]) * inv_freq[i];
      table[(t * half + i) * 2 + 0] = static_cast<float>(a * std::cos(angle));
      table[(t * half + i) * 2 + 1] = static_cast<float>(a * std::sin(angle));
    }
  }
}

void rope_rotate(float* x, const float* table, int64_t T, int64_t heads, int64_t D, bool inverse) {
  const int64_t half = D / 2;
  const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (T * heads * D > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    const float* cs = table + t * half * 2;
    for (int64_t h = 0; h < heads; ++h) {
      float* a = x + (t * heads + h) * D;
      float* b = a + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        float c = cs[2 * i], s = sign * cs[2 * i + 1];
        float x1 = a[i], x2 = b[i];
        a[i] = x1 * c - x2 * s;
        b[i] = x2 * c + x1 * s;
      }
    }
  }
}

}  // namespace rt::cpu
