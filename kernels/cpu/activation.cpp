// SiLU, squared ReLU, the SiLU gate (SwiGLU and the gated outputs of GLA and Mamba-2) and
// log-sigmoid.
//   silu(x) = x * sigmoid(x),  silu'(x) = s * (1 + x * (1 - s)), s = sigmoid(x)
//   gate_up [T, 2F] = [gate | up]  ->  out [T, F] = silu(gate) * up
//   silu_gate: out = a * silu(gate), element by element
//   relu2: out = max(x, 0)^2 (NemotronH's MLP), relu2'(x) = 2 max(x, 0)
//   logsigmoid: out = scale * logsigmoid(x + bias[c]) = -scale * softplus(-(x + bias[c]))
//   add_bias: out[t, c] += bias[c] (the q, k, v biases of Qwen2-style attention)
#include <cmath>
#include <vector>

#include "kernels/cpu/block_sums.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

namespace {
// out = a * silu(gate) and its two partial derivatives: the one place this math lives.
inline float gated(float a, float gate) { return a * gate * fast_sigmoid(gate); }
inline void gated_backward(float dout, float a, float gate, float& da, float& dgate) {
  const float s = fast_sigmoid(gate);
  da = dout * gate * s;
  dgate = dout * a * s * (1.0f + gate * (1.0f - s));
}
}  // namespace

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
    for (int64_t f = 0; f < F; ++f) y[f] = gated(u[f], g[f]);
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
    for (int64_t f = 0; f < F; ++f) gated_backward(dy[f], u[f], g[f], du[f], dg[f]);
  }
}

void relu2_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
    out[i] = r * r;
  }
}

void relu2_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) dinp[i] = inp[i] > 0.0f ? 2.0f * inp[i] * dout[i] : 0.0f;
}

void silu_gate_forward(float* out, const float* a, const float* gate, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = gated(a[i], gate[i]);
}

void silu_gate_backward(float* da, float* dgate, const float* dout, const float* a,
                        const float* gate, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) gated_backward(dout[i], a[i], gate[i], da[i], dgate[i]);
}

namespace {
// log(1 + e^x) without overflow; its derivative is sigmoid(x).
inline float softplus(float x) { return std::max(x, 0.0f) + std::log1p(fast_exp(-std::abs(x))); }
}  // namespace

void logsigmoid_forward(float* out, const float* x, const float* bias, float scale, int64_t T,
                        int64_t C) {
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) out[t * C + c] = -scale * softplus(-(x[t * C + c] + bias[c]));
}

// d/dx logsigmoid(x) = sigmoid(-x). dbias accumulates over rows in fixed blocks (deterministic).
void logsigmoid_backward(float* dx, float* dbias, const float* dout, const float* x,
                         const float* bias, float scale, int64_t T, int64_t C) {
  const int64_t blocks = row_blocks(T);
  std::vector<float> partial(static_cast<size_t>(blocks * C), 0.0f);
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t c = 0; c < C; ++c) {
        const float d = dout[t * C + c] * scale * fast_sigmoid(-(x[t * C + c] + bias[c]));
        dx[t * C + c] = d;
        partial[b * C + c] += d;
      }
  add_block_partials(dbias, partial.data(), blocks, C);
}

void add_bias_forward(float* out, const float* bias, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) out[t * C + c] += bias[c];
}

void add_bias_backward(float* dbias, const float* dout, int64_t T, int64_t C) {
  const int64_t blocks = row_blocks(T);
  std::vector<float> partial(static_cast<size_t>(blocks * C), 0.0f);
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t c = 0; c < C; ++c) partial[b * C + c] += dout[t * C + c];
  add_block_partials(dbias, partial.data(), blocks, C);
}

}  // namespace rt::cpu
