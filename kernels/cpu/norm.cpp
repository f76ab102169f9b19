// RMSNorm (Llama): out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps), over each
// of `groups` groups of C / groups channels of a row (1: the whole row; Mamba-2's gated norm
// uses ngroups).
//   inp, out, dinp [T, C]; weight, dweight [C]; rstd [T, groups]
#include <cmath>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu/block_sums.h"
#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

namespace {

// inp's values: f32, or bf16 (the residual stream under run.precision: bf16).
inline float value(const float* x, int64_t i) { return x[i]; }
inline float value(const uint16_t* x, int64_t i) { return bf16_to_f32(x[i]); }

template <class In>
void rmsnorm_forward_impl(float* out, float* rstd, const In* inp, const float* weight, int64_t T,
                          int64_t C, int64_t groups, float eps) {
  const int64_t G = C / groups;
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const In* x = inp + t * C + gi * G;
      const float* w = weight + gi * G;
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < G; ++c) ss += value(x, c) * value(x, c);
      float r = 1.0f / std::sqrt(ss / static_cast<float>(G) + eps);
      rstd[t * groups + gi] = r;
      float* y = out + t * C + gi * G;
#pragma omp simd
      for (int64_t c = 0; c < G; ++c) y[c] = value(x, c) * r * w[c];
    }
  }
}

// With g = dout * weight:  dinp = rstd * g - rstd^3 / C * inp * sum(g * inp)
template <class In>
void rmsnorm_backward_impl(float* dinp, float* dweight, const float* dout, const In* inp,
                           const float* weight, const float* rstd, int64_t T, int64_t C,
                           int64_t groups) {
  const int64_t G = C / groups;
  const int64_t blocks = row_blocks(T);
  std::vector<float> partial(static_cast<size_t>(blocks * C), 0.0f);
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t) {
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t c0 = gi * G;
        const In* x = inp + t * C + c0;
        const float* dy = dout + t * C + c0;
        const float* w = weight + c0;
        float* dw = partial.data() + b * C + c0;
        float r = rstd[t * groups + gi];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < G; ++c) dot += dy[c] * w[c] * value(x, c);
        float k = r * r * r * dot / static_cast<float>(G);
        float* dx = dinp + t * C + c0;
#pragma omp simd
        for (int64_t c = 0; c < G; ++c) {
          dx[c] += r * dy[c] * w[c] - k * value(x, c);
          dw[c] += dy[c] * value(x, c) * r;
        }
      }
    }
  }
  add_block_partials(dweight, partial.data(), blocks, C);
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

}  // namespace rt::cpu
