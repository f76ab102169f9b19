// exp and friends for the CPU kernels: plain loops over these vectorise (AVX2/AVX-512), unlike
// libm's expf. Relative error 1e-7 for |x| <= 1, growing with |x| to 2e-6 at 20 and 4e-6 at the
// ends of the f32 range (the rounding of x log2(e)); exp(-inf) is exactly 0, exp(NaN) is NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace rt::cpu {

inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  float t = x * kLog2e;
  // 2^-127 and below become exactly 0 (exponent field 0). A NaN fails both comparisons and takes
  // a bound here (never converted to an integer, which would be undefined) and is returned as
  // itself at the end.
  t = t > -127.0f ? t : -127.0f;
  t = t < 127.0f ? t : 127.0f;
  // Round to nearest by adding and removing 1.5 * 2^23 (|t| <= 127 here): unlike std::floor,
  // which GCC leaves as a libm call, this keeps the loops around fast_exp vectorised.
  constexpr float kRound = 12582912.0f;
  float n = (t + kRound) - kRound;
  float f = t - n;  // in [-0.5, 0.5]
  // 2^f by its Taylor series in f*ln2, degree 7: truncation error < 6e-9 on this interval.
  float p = 1.5252733804059840e-05f;
  p = p * f + 1.5403530393381608e-04f;
  p = p * f + 1.3333558146428443e-03f;
  p = p * f + 9.6181291076284772e-03f;
  p = p * f + 5.5504108664821580e-02f;
  p = p * f + 2.4022650695910071e-01f;
  p = p * f + 6.9314718055994531e-01f;
  p = p * f + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  const float result = p * std::bit_cast<float>(bits);
  return x == x ? result : x;
}

inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

}  // namespace rt::cpu
