// Activations on the GPU (as kernels/cpu/activation.cpp): silu, SwiGLU, squared ReLU, a *
// silu(gate), and GLA's gate scale * logsigmoid(x + bias). One thread per element; dbias in row
// blocks.
//   gate_up [T, 2F] = [gate | up], out [T, F]; logsigmoid: x, out [T, C], bias [C]
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

// out = a * silu(gate) and its partial derivatives: the one place this math lives on the GPU.
__device__ inline float gated(float a, float gate) { return a * gate * sigmoid(gate); }
__device__ inline void gated_backward(float dout, float a, float gate, float& da, float& dgate) {
  const float s = sigmoid(gate);
  da = dout * gate * s;
  dgate = dout * a * s * (1.0f + gate * (1.0f - s));
}

__global__ void silu_forward_kernel(float* out, const float* inp, int64_t n) {
  RT_GRID_STRIDE(i, n) out[i] = inp[i] * sigmoid(inp[i]);
}
__global__ void silu_backward_kernel(float* dinp, const float* dout, const float* inp, int64_t n) {
  RT_GRID_STRIDE(i, n) {
    const float s = sigmoid(inp[i]);
    dinp[i] = dout[i] * s * (1.0f + inp[i] * (1.0f - s));
  }
}
__global__ void swiglu_forward_kernel(float* out, const float* gate_up, int64_t T, int64_t F) {
  RT_GRID_STRIDE(i, T * F) {
    const float* g = gate_up + (i / F) * 2 * F + i % F;
    out[i] = gated(g[F], g[0]);
  }
}
__global__ void swiglu_backward_kernel(float* dgate_up, const float* dout, const float* gate_up,
                                       int64_t T, int64_t F) {
  RT_GRID_STRIDE(i, T * F) {
    const int64_t at = (i / F) * 2 * F + i % F;
    gated_backward(dout[i], gate_up[at + F], gate_up[at], dgate_up[at + F], dgate_up[at]);
  }
}
__global__ void relu2_forward_kernel(float* out, const float* inp, int64_t n) {
  RT_GRID_STRIDE(i, n) {
    const float r = fmaxf(inp[i], 0.0f);
    out[i] = r * r;
  }
}
__global__ void relu2_backward_kernel(float* dinp, const float* dout, const float* inp, int64_t n) {
  RT_GRID_STRIDE(i, n) dinp[i] = inp[i] > 0.0f ? 2.0f * inp[i] * dout[i] : 0.0f;
}
__global__ void silu_gate_forward_kernel(float* out, const float* a, const float* gate, int64_t n) {
  RT_GRID_STRIDE(i, n) out[i] = gated(a[i], gate[i]);
}
__global__ void silu_gate_backward_kernel(float* da, float* dgate, const float* dout,
                                          const float* a, const float* gate, int64_t n) {
  RT_GRID_STRIDE(i, n) gated_backward(dout[i], a[i], gate[i], da[i], dgate[i]);
}
__global__ void logsigmoid_forward_kernel(float* out, const float* x, const float* bias,
                                          float scale, int64_t T, int64_t C) {
  RT_GRID_STRIDE(i, T * C) out[i] = -scale * softplus(-(x[i] + bias[i % C]));
}
// d/dx logsigmoid(x) = sigmoid(-x); dx overwritten
__global__ void logsigmoid_dx_kernel(float* dx, const float* dout, const float* x,
                                     const float* bias, float scale, int64_t T, int64_t C) {
  RT_GRID_STRIDE(i, T * C) dx[i] = dout[i] * scale * sigmoid(-(x[i] + bias[i % C]));
}
// partial[b, c] = sum of dx over the rows of block b
__global__ void column_partial_kernel(float* partial, const float* m, int64_t T, int64_t C) {
  const int64_t blocks = ceil_div(T, kRowBlock);
  RT_GRID_STRIDE(e, blocks * C) {
    const int64_t b = e / C, c = e % C;
    float acc = 0.0f;
    for (int64_t t = b * kRowBlock; t < min(T, (b + 1) * kRowBlock); ++t) acc += m[t * C + c];
    partial[e] = acc;
  }
}

__global__ void add_bias_kernel(float* out, const float* bias, int64_t T, int64_t C) {
  RT_GRID_STRIDE(i, T * C) out[i] += bias[i % C];
}

}  // namespace

void silu_forward(float* out, const float* inp, int64_t n) {
  launch(silu_forward_kernel, n, out, inp, n);
}
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  launch(silu_backward_kernel, n, dinp, dout, inp, n);
}
void swiglu_forward(float* out, const float* gate_up, int64_t T, int64_t F) {
  launch(swiglu_forward_kernel, T * F, out, gate_up, T, F);
}
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t T,
                     int64_t F) {
  launch(swiglu_backward_kernel, T * F, dgate_up, dout, gate_up, T, F);
}
void relu2_forward(float* out, const float* inp, int64_t n) {
  launch(relu2_forward_kernel, n, out, inp, n);
}
void relu2_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  launch(relu2_backward_kernel, n, dinp, dout, inp, n);
}
void silu_gate_forward(float* out, const float* a, const float* gate, int64_t n) {
  launch(silu_gate_forward_kernel, n, out, a, gate, n);
}
void silu_gate_backward(float* da, float* dgate, const float* dout, const float* a,
                        const float* gate, int64_t n) {
  launch(silu_gate_backward_kernel, n, da, dgate, dout, a, gate, n);
}
void logsigmoid_forward(float* out, const float* x, const float* bias, float scale, int64_t T,
                        int64_t C) {
  launch(logsigmoid_forward_kernel, T * C, out, x, bias, scale, T, C);
}
void logsigmoid_backward(float* dx, float* dbias, const float* dout, const float* x,
                         const float* bias, float scale, int64_t T, int64_t C) {
  launch(logsigmoid_dx_kernel, T * C, dx, dout, x, bias, scale, T, C);
  const int64_t blocks = ceil_div(T, kRowBlock);
  Scratch partial(blocks * C * sizeof(float));
  launch(column_partial_kernel, blocks * C, partial.as<float>(), static_cast<const float*>(dx), T,
         C);
  add_block_partials(dbias, partial.as<float>(), blocks, C);
}

void add_bias_forward(float* out, const float* bias, int64_t T, int64_t C) {
  launch(add_bias_kernel, T * C, out, bias, T, C);
}
void add_bias_backward(float* dbias, const float* dout, int64_t T, int64_t C) {
  const int64_t blocks = ceil_div(T, kRowBlock);
  Scratch partial(blocks * C * sizeof(float));
  launch(column_partial_kernel, blocks * C, partial.as<float>(), dout, T, C);
  add_block_partials(dbias, partial.as<float>(), blocks, C);
}

}  // namespace rt::cuda
