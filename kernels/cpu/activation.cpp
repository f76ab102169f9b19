// SiLU and SwiGLU.
//   silu(x) = x * sigmoid(x),  silu'(x) = s * (1 + x * (1 - s)), s = sigmoid(x)
//   gate_up [T, 2F] = [gate | up]  ->  out [T, F] = silu(gate) * up
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

void silu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * fast_sigmoid(inp[i]);
}

void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    float s = fast_sigmoid(inp[i]);
    dinp[i] = dout[i] * s * (1.0f + inp[i] * (1.0f - s));
  }
}

void swiglu_forward(float* out, const float* gate_up, int64_t T, int64_t F) {
#pragma omp parallel for schedule(static) if (T * F > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate_up + t * 2 * F;
    const float* u = g + F;
    float* y = out + t * F;
#pragma omp simd
    for (int64_t f = 0; f < F; ++f) y[f] = g[f] * fast_sigmoid(g[f]) * u[f];
  }
}

void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t T,
                     int64_t F) {
#pragma omp parallel for schedule(static) if (T * F > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate_up + t * 2 * F;
    const float* u = g + F;
    const float* dy = dout + t * F;
    float* dg = dgate_up + t * 2 * F;
    float* du = dg + F;
#pragma omp simd
    for (int64_t f = 0; f < F; ++f) {
      float s = fast_sigmoid(g[f]);
      float silu = g[f] * s;
      dg[f] = dy[f] * u[f] * s * (1.0f + g[f] * (1.0f - s));
      du[f] = dy[f] * silu;
    }
  }
}

}  // namespace rt::cpu
