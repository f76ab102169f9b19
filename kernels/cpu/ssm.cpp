// The causal depthwise convolution of Mamba-2 (and any short conv), and Mamba-2's
// element-wise parts around the recurrence.
//   conv: out[t, c] = bias[c] + sum_i weight[c, i] * x[t + i - (W - 1), c], rows before the
//         first coming from halo [W - 1, C] (the previous rows of the sequence, held by another
//         rank or chunk) or zero
//   dt:   dt = softplus(dt_raw + dt_bias), g = -exp(A_log) * dt        [T, H]
//   scale_heads: out[t, h, :] = s[t, h] * x[t, h, :]                   (v = dt * x)
//   skip_heads:  y[t, h, :] = o[t, h, :] + d[h] * x[t, h, :]           (y = o + D x)
// Sums over rows (weight, bias and per-head parameter gradients) run in fixed row blocks, added
// in block order: the same bits whatever the thread count.
#include <cmath>
#include <vector>

#include "kernels/cpu/block_sums.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

namespace {

// x row p of the sequence, p < 0 reaching into the halo.
inline float conv_input(const float* x, const float* halo, int64_t p, int64_t c, int64_t C,
                        int64_t W) {
  if (p >= 0) return x[p * C + c];
  return halo ? halo[(W - 1 + p) * C + c] : 0.0f;
}

inline float softplus(float x) { return std::max(x, 0.0f) + std::log1p(fast_exp(-std::abs(x))); }

}  // namespace

void conv1d_causal_forward(float* out, const float* x, const float* weight, const float* bias,
                           const float* halo, int64_t T, int64_t C, int64_t W) {
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (int64_t i = 0; i < W; ++i)
        acc += weight[c * W + i] * conv_input(x, halo, t + i - (W - 1), c, C, W);
      out[t * C + c] = acc;
    }
}

void conv1d_causal_backward(float* dx, float* dweight, float* dbias, float* dhalo,
                            const float* dout, const float* x, const float* weight,
                            const float* halo, int64_t T, int64_t C, int64_t W) {
  // dx[s] = sum_i w[i] dout[s - i + W - 1] over the outputs that read row s; the halo rows
  // (s < 0) get the same sum.
  auto input_grad = [&](int64_t s, int64_t c) {
    float acc = 0.0f;
    for (int64_t i = 0; i < W; ++i) {
      const int64_t t = s - i + W - 1;
      if (t >= 0 && t < T) acc += weight[c * W + i] * dout[t * C + c];
    }
    return acc;
  };
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t s = 0; s < T; ++s)
    for (int64_t c = 0; c < C; ++c) dx[s * C + c] = input_grad(s, c);
  if (dhalo)
    for (int64_t h = 0; h < W - 1; ++h)
      for (int64_t c = 0; c < C; ++c) dhalo[h * C + c] = input_grad(h - (W - 1), c);

  const int64_t blocks = row_blocks(T);
  std::vector<float> partial(static_cast<size_t>(blocks * C * (W + 1)), 0.0f);
#pragma omp parallel for schedule(static) if (T * C > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t c = 0; c < C; ++c) {
        float* p = &partial[(b * C + c) * (W + 1)];
        const float d = dout[t * C + c];
        for (int64_t i = 0; i < W; ++i) p[i] += d * conv_input(x, halo, t + i - (W - 1), c, C, W);
        p[W] += d;
      }
  for (int64_t i = 0; i < W; ++i)
    add_block_partials(dweight + i, partial.data() + i, blocks, C, W + 1, W);
  if (dbias) add_block_partials(dbias, partial.data() + W, blocks, C, W + 1);
}

void mamba_dt_forward(float* dt, float* g, const float* dt_raw, const float* dt_bias,
                      const float* a_log, int64_t T, int64_t H) {
#pragma omp parallel for schedule(static) if (T * H > (1 << 15))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float d = softplus(dt_raw[t * H + h] + dt_bias[h]);
      dt[t * H + h] = d;
      g[t * H + h] = -std::exp(a_log[h]) * d;
    }
}

// ddt is the gradient reaching dt directly (through v = dt * x), dg the one through g.
void mamba_dt_backward(float* ddt_raw, float* ddt_bias, float* da_log, const float* ddt,
                       const float* dg, const float* dt_raw, const float* dt_bias,
                       const float* a_log, int64_t T, int64_t H) {
  const int64_t blocks = row_blocks(T);
  std::vector<double> partial(static_cast<size_t>(blocks * H * 2), 0.0);  // [2, blocks, H]
#pragma omp parallel for schedule(static) if (T * H > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t i = t * H + h;
        const float z = dt_raw[i] + dt_bias[h];
        const float a = -std::exp(a_log[h]);
        const float d = softplus(z);
        const float total = ddt[i] + dg[i] * a;
        ddt_raw[i] = total * fast_sigmoid(z);
        partial[b * H + h] += ddt_raw[i];
        partial[(blocks + b) * H + h] += static_cast<double>(dg[i]) * a * d;  // dg/dA_log = g
      }
  add_block_partials(ddt_bias, partial.data(), blocks, H);
  add_block_partials(da_log, partial.data() + blocks * H, blocks, H);
}

void scale_heads_forward(float* out, const float* x, const float* s, int64_t T, int64_t H,
                         int64_t P) {
#pragma omp parallel for schedule(static) if (T * H * P > (1 << 15))
  for (int64_t i = 0; i < T * H; ++i)
    for (int64_t p = 0; p < P; ++p) out[i * P + p] = s[i] * x[i * P + p];
}

// dx += s * dout ; ds = sum_p x * dout
void scale_heads_backward(float* dx, float* ds, const float* dout, const float* x, const float* s,
                          int64_t T, int64_t H, int64_t P) {
#pragma omp parallel for schedule(static) if (T * H * P > (1 << 15))
  for (int64_t i = 0; i < T * H; ++i) {
    float acc = 0.0f;
    for (int64_t p = 0; p < P; ++p) {
      dx[i * P + p] += s[i] * dout[i * P + p];
      acc += x[i * P + p] * dout[i * P + p];
    }
    ds[i] = acc;
  }
}

void skip_heads_forward(float* y, const float* o, const float* x, const float* d, int64_t T,
                        int64_t H, int64_t P) {
#pragma omp parallel for schedule(static) if (T * H * P > (1 << 15))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t p = 0; p < P; ++p) {
        const int64_t i = (t * H + h) * P + p;
        y[i] = o[i] + d[h] * x[i];
      }
}

// dx += d * dy ; dd += sum_{t, p} dy * x
void skip_heads_backward(float* dx, float* dd, const float* dy, const float* x, const float* d,
                         int64_t T, int64_t H, int64_t P) {
  const int64_t blocks = row_blocks(T);
  std::vector<double> partial(static_cast<size_t>(blocks * H), 0.0);
#pragma omp parallel for schedule(static) if (T * H * P > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = b * kRowBlock; t < std::min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t i = (t * H + h) * P + p;
          dx[i] += d[h] * dy[i];
          partial[b * H + h] += static_cast<double>(dy[i]) * x[i];
        }
  add_block_partials(dd, partial.data(), blocks, H);
}

}  // namespace rt::cpu
