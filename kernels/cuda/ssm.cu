// The causal depthwise convolution and Mamba-2's element-wise parts on the GPU (as
// kernels/cpu/ssm.cpp):
//   conv: out[t, c] = bias[c] + sum_i weight[c, i] * x[t + i - (W - 1), c], rows before the
//         first from halo [W - 1, C] or zero
//   dt:   dt = softplus(dt_raw + dt_bias), g = -exp(A_log) * dt        [T, H]
//   scale_heads: out[t, h, :] = s[t, h] * x[t, h, :];  skip_heads: y = o + d[h] * x
// One thread per output element; sums over rows in blocks of kRowBlock rows, added in order.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

__device__ inline float conv_input(const float* x, const float* halo, int64_t p, int64_t c,
                                   int64_t C, int64_t W) {
  if (p >= 0) return x[p * C + c];
  return halo ? halo[(W - 1 + p) * C + c] : 0.0f;
}

__global__ void conv_forward_kernel(float* out, const float* x, const float* weight,
                                    const float* bias, const float* halo, int64_t T, int64_t C,
                                    int64_t W) {
  RT_GRID_STRIDE(e, T * C) {
    const int64_t t = e / C, c = e % C;
    float acc = bias ? bias[c] : 0.0f;
    for (int64_t i = 0; i < W; ++i)
      acc += weight[c * W + i] * conv_input(x, halo, t + i - (W - 1), c, C, W);
    out[e] = acc;
  }
}

// Gradient of input row s (s < 0: a halo row): the outputs t = s - i + W - 1 that read it.
__global__ void conv_input_grad_kernel(float* dx, float* dhalo, const float* dout,
                                       const float* weight, int64_t T, int64_t C, int64_t W) {
  const int64_t rows = T + (dhalo ? W - 1 : 0);
  RT_GRID_STRIDE(e, rows * C) {
    const int64_t r = e / C, c = e % C;
    const int64_t s = dhalo ? r - (W - 1) : r;
    float acc = 0.0f;
    for (int64_t i = 0; i < W; ++i) {
      const int64_t t = s - i + W - 1;
      if (t >= 0 && t < T) acc += weight[c * W + i] * dout[t * C + c];
    }
    if (s < 0)
      dhalo[(s + W - 1) * C + c] = acc;
    else
      dx[s * C + c] = acc;
  }
}

// partial[b, c, 0..W-1] = weight gradient of block b's rows, partial[b, c, W] = bias gradient
__global__ void conv_param_partial_kernel(float* partial, const float* dout, const float* x,
                                          const float* halo, int64_t T, int64_t C, int64_t W) {
  const int64_t blocks = ceil_div(T, kRowBlock);
  RT_GRID_STRIDE(e, blocks * C) {
    const int64_t b = e / C, c = e % C;
    float* p = partial + e * (W + 1);
    for (int64_t i = 0; i <= W; ++i) p[i] = 0.0f;
    for (int64_t t = b * kRowBlock; t < min(T, (b + 1) * kRowBlock); ++t) {
      const float d = dout[t * C + c];
      for (int64_t i = 0; i < W; ++i) p[i] += d * conv_input(x, halo, t + i - (W - 1), c, C, W);
      p[W] += d;
    }
  }
}

__global__ void conv_param_sum_kernel(float* dweight, float* dbias, const float* partial,
                                      int64_t blocks, int64_t C, int64_t W) {
  RT_GRID_STRIDE(c, C) {
    for (int64_t i = 0; i <= W; ++i) {  // in double, added once (kernels/cpu/block_sums.h)
      if (i == W && !dbias) break;
      double acc = 0.0;
      for (int64_t b = 0; b < blocks; ++b) acc += partial[(b * C + c) * (W + 1) + i];
      if (i < W)
        dweight[c * W + i] += static_cast<float>(acc);
      else
        dbias[c] += static_cast<float>(acc);
    }
  }
}

__global__ void mamba_dt_forward_kernel(float* dt, float* g, const float* dt_raw,
                                        const float* dt_bias, const float* a_log, int64_t T,
                                        int64_t H) {
  RT_GRID_STRIDE(i, T * H) {
    const int64_t h = i % H;
    const float d = softplus(dt_raw[i] + dt_bias[h]);
    dt[i] = d;
    g[i] = -expf(a_log[h]) * d;
  }
}

__global__ void mamba_dt_backward_kernel(float* ddt_raw, const float* ddt, const float* dg,
                                         const float* dt_raw, const float* dt_bias,
                                         const float* a_log, int64_t T, int64_t H) {
  RT_GRID_STRIDE(i, T * H) {
    const int64_t h = i % H;
    const float z = dt_raw[i] + dt_bias[h];
    ddt_raw[i] = (ddt[i] + dg[i] * -expf(a_log[h])) * sigmoid(z);
  }
}

// partial[b, h] = (sum of ddt_raw, sum of dg * g) over block b's rows, in double
__global__ void mamba_dt_partial_kernel(double* partial, const float* ddt_raw, const float* dg,
                                        const float* dt_raw, const float* dt_bias,
                                        const float* a_log, int64_t T, int64_t H) {
  const int64_t blocks = ceil_div(T, kRowBlock);
  RT_GRID_STRIDE(e, blocks * H) {
    const int64_t b = e / H, h = e % H;
    const float a = -expf(a_log[h]);
    double bias_sum = 0, alog_sum = 0;
    for (int64_t t = b * kRowBlock; t < min(T, (b + 1) * kRowBlock); ++t) {
      const int64_t i = t * H + h;
      bias_sum += ddt_raw[i];
      alog_sum +=
          static_cast<double>(dg[i]) * a * softplus(dt_raw[i] + dt_bias[h]);  // dg/dA_log = g
    }
    partial[e] = bias_sum;
    partial[blocks * H + e] = alog_sum;
  }
}

__global__ void scale_heads_forward_kernel(float* out, const float* x, const float* s, int64_t n,
                                           int64_t P) {
  RT_GRID_STRIDE(i, n) out[i] = s[i / P] * x[i];
}

// dx += s * dout (thread per element); ds = sum_p x * dout (thread per row, fixed order)
__global__ void scale_heads_dx_kernel(float* dx, const float* dout, const float* s, int64_t n,
                                      int64_t P) {
  RT_GRID_STRIDE(i, n) dx[i] += s[i / P] * dout[i];
}
__global__ void scale_heads_ds_kernel(float* ds, const float* dout, const float* x, int64_t rows,
                                      int64_t P) {
  RT_GRID_STRIDE(r, rows) {
    float acc = 0.0f;
    for (int64_t p = 0; p < P; ++p) acc += x[r * P + p] * dout[r * P + p];
    ds[r] = acc;
  }
}

__global__ void skip_heads_forward_kernel(float* y, const float* o, const float* x, const float* d,
                                          int64_t n, int64_t H, int64_t P) {
  RT_GRID_STRIDE(i, n) y[i] = o[i] + d[(i / P) % H] * x[i];
}
__global__ void skip_heads_dx_kernel(float* dx, const float* dy, const float* d, int64_t n,
                                     int64_t H, int64_t P) {
  RT_GRID_STRIDE(i, n) dx[i] += d[(i / P) % H] * dy[i];
}
__global__ void skip_heads_partial_kernel(double* partial, const float* dy, const float* x,
                                          int64_t T, int64_t H, int64_t P) {
  const int64_t blocks = ceil_div(T, kRowBlock);
  RT_GRID_STRIDE(e, blocks * H) {
    const int64_t b = e / H, h = e % H;
    double acc = 0;
    for (int64_t t = b * kRowBlock; t < min(T, (b + 1) * kRowBlock); ++t)
      for (int64_t p = 0; p < P; ++p) {
        const int64_t i = (t * H + h) * P + p;
        acc += static_cast<double>(dy[i]) * x[i];
      }
    partial[e] = acc;
  }
}

}  // namespace

void conv1d_causal_forward(float* out, const float* x, const float* weight, const float* bias,
                           const float* halo, int64_t T, int64_t C, int64_t W) {
  launch(conv_forward_kernel, T * C, out, x, weight, bias, halo, T, C, W);
}

void conv1d_causal_backward(float* dx, float* dweight, float* dbias, float* dhalo,
                            const float* dout, const float* x, const float* weight,
                            const float* halo, int64_t T, int64_t C, int64_t W) {
  launch(conv_input_grad_kernel, (T + (dhalo ? W - 1 : 0)) * C, dx, dhalo, dout, weight, T, C, W);
  const int64_t blocks = ceil_div(T, kRowBlock);
  Scratch partial(blocks * C * (W + 1) * sizeof(float));
  launch(conv_param_partial_kernel, blocks * C, partial.as<float>(), dout, x, halo, T, C, W);
  launch(conv_param_sum_kernel, C, dweight, dbias, static_cast<const float*>(partial.as<float>()),
         blocks, C, W);
}

void mamba_dt_forward(float* dt, float* g, const float* dt_raw, const float* dt_bias,
                      const float* a_log, int64_t T, int64_t H) {
  launch(mamba_dt_forward_kernel, T * H, dt, g, dt_raw, dt_bias, a_log, T, H);
}

void mamba_dt_backward(float* ddt_raw, float* ddt_bias, float* da_log, const float* ddt,
                       const float* dg, const float* dt_raw, const float* dt_bias,
                       const float* a_log, int64_t T, int64_t H) {
  launch(mamba_dt_backward_kernel, T * H, ddt_raw, ddt, dg, dt_raw, dt_bias, a_log, T, H);
  const int64_t blocks = ceil_div(T, kRowBlock);
  Scratch partial(2 * blocks * H * sizeof(double));
  launch(mamba_dt_partial_kernel, blocks * H, partial.as<double>(),
         static_cast<const float*>(ddt_raw), dg, dt_raw, dt_bias, a_log, T, H);
  add_block_partials(ddt_bias, partial.as<double>(), blocks, H);
  add_block_partials(da_log, partial.as<double>() + blocks * H, blocks, H);
}

void scale_heads_forward(float* out, const float* x, const float* s, int64_t T, int64_t H,
                         int64_t P) {
  launch(scale_heads_forward_kernel, T * H * P, out, x, s, T * H * P, P);
}

void scale_heads_backward(float* dx, float* ds, const float* dout, const float* x, const float* s,
                          int64_t T, int64_t H, int64_t P) {
  launch(scale_heads_dx_kernel, T * H * P, dx, dout, s, T * H * P, P);
  launch(scale_heads_ds_kernel, T * H, ds, dout, x, T * H, P);
}

void skip_heads_forward(float* y, const float* o, const float* x, const float* d, int64_t T,
                        int64_t H, int64_t P) {
  launch(skip_heads_forward_kernel, T * H * P, y, o, x, d, T * H * P, H, P);
}

void skip_heads_backward(float* dx, float* dd, const float* dy, const float* x, const float* d,
                         int64_t T, int64_t H, int64_t P) {
  launch(skip_heads_dx_kernel, T * H * P, dx, dy, d, T * H * P, H, P);
  const int64_t blocks = ceil_div(T, kRowBlock);
  Scratch partial(blocks * H * sizeof(double));
  launch(skip_heads_partial_kernel, blocks * H, partial.as<double>(), dy, x, T, H, P);
  add_block_partials(dd, partial.as<double>(), blocks, H);
}

}  // namespace rt::cuda
