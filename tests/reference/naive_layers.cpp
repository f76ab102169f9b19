#include "tests/reference/naive_layers.h"

#include <cmath>

namespace rt::ref {

namespace {

// Columns [c0, c0 + n) of a [T, width] matrix, and the inverse: written into dst's columns.
Vec columns(const Vec& m, int T, int width, int c0, int n) {
  Vec out(static_cast<size_t>(T) * n);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < n; ++c) out[size_t(t) * n + c] = m[size_t(t) * width + c0 + c];
  return out;
}
void put_columns(Vec& dst, int T, int width, int c0, const Vec& src, int n) {
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < n; ++c) dst[size_t(t) * width + c0 + c] = src[size_t(t) * n + c];
}
void add_into(Vec& dst, const Vec& src) {
  for (size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
}

struct GlaForward {
  Vec q, k, v, gate, low, pre, g, o, normed, gated, y;
};

GlaForward gla_forward(const Vec& x, const GlaParams& p, const GlaShape& s) {
  const int K = s.H * s.dk, V = s.H * s.dv;
  GlaForward f;
  f.q = linear(x, p.wq, s.T, s.C, K);
  f.k = linear(x, p.wk, s.T, s.C, K);
  f.v = linear(x, p.wv, s.T, s.C, V);
  f.gate = linear(x, p.wg, s.T, s.C, V);
  f.low = linear(x, p.w_gate1, s.T, s.C, s.rank);
  f.pre = linear(f.low, p.w_gate2, s.T, s.rank, K);
  f.g = logsigmoid(f.pre, p.b_gate, s.T, K, 1.0 / s.normalizer);
  Vec h_final;
  const GlrShape gs{s.T, s.H, s.H, s.dk, s.dv, true, 1.0 / std::sqrt(static_cast<double>(s.dk))};
  glr(f.q, f.k, f.v, f.g, Vec(size_t(s.H) * s.dk * s.dv, 0.0), gs, f.o, h_final);
  f.normed = rmsnorm(f.o, p.norm, s.T * s.H, s.dv, s.eps);
  f.gated = silu_gate(f.normed, f.gate);
  f.y = linear(f.gated, p.wo, s.T, V, s.C);
  return f;
}

struct MambaForward {
  Vec proj, z, xbc, dt_raw, conv, act, xs, b, c, dt, g, v, o, y, gated, normed, out;
};

MambaForward mamba_forward(const Vec& x, const Mamba2Params& p, const Mamba2Shape& s) {
  const int GN = s.G * s.N, conv_dim = s.DI + 2 * GN, R = 2 * s.DI + 2 * GN + s.NH;
  MambaForward f;
  f.proj = linear(x, p.in_proj, s.T, s.C, R);
  f.z = columns(f.proj, s.T, R, 0, s.DI);
  f.xbc = columns(f.proj, s.T, R, s.DI, conv_dim);
  f.dt_raw = columns(f.proj, s.T, R, s.DI + conv_dim, s.NH);
  f.conv = conv1d_causal(f.xbc, p.conv_w, p.conv_b, Vec(), s.T, conv_dim, s.W);
  f.act = silu(f.conv);
  f.xs = columns(f.act, s.T, conv_dim, 0, s.DI);
  f.b = columns(f.act, s.T, conv_dim, s.DI, GN);
  f.c = columns(f.act, s.T, conv_dim, s.DI + GN, GN);
  mamba_dt(f.dt_raw, p.dt_bias, p.A_log, s.T, s.NH, f.dt, f.g);
  f.v.resize(f.xs.size());
  for (int t = 0; t < s.T; ++t)
    for (int h = 0; h < s.NH; ++h)
      for (int i = 0; i < s.P; ++i) {
        const size_t e = (size_t(t) * s.NH + h) * s.P + i;
        f.v[e] = f.dt[size_t(t) * s.NH + h] * f.xs[e];
      }
  Vec h_final;
  const GlrShape gs{s.T, s.NH, s.G, s.N, s.P, false, 1.0};
  glr(f.c, f.b, f.v, f.g, Vec(size_t(s.NH) * s.N * s.P, 0.0), gs, f.o, h_final);
  f.y = f.o;
  for (size_t e = 0; e < f.y.size(); ++e) f.y[e] += p.D[(e / s.P) % s.NH] * f.xs[e];
  f.gated = silu_gate(f.y, f.z);
  f.normed = rmsnorm(f.gated, p.norm, s.T, s.DI, s.eps, s.G);
  f.out = linear(f.normed, p.out_proj, s.T, s.DI, s.C);
  return f;
}

}  // namespace

Vec gla_layer(const Vec& x, const GlaParams& p, const GlaShape& s) {
  return gla_forward(x, p, s).y;
}

void gla_layer_backward(const Vec& x, const Vec& dy, const GlaParams& p, const GlaShape& s, Vec& dx,
                        GlaParams& grads) {
  const int K = s.H * s.dk, V = s.H * s.dv;
  const GlaForward f = gla_forward(x, p, s);
  Vec dgated, dnormed, dgate, d_o, dq, dk, dv, dg, dh0, dpre, dlow, part;
  linear_backward(dy, f.gated, p.wo, s.T, V, s.C, dgated, grads.wo);
  silu_gate_backward(dgated, f.normed, f.gate, dnormed, dgate);
  rmsnorm_backward(dnormed, f.o, p.norm, s.T * s.H, s.dv, s.eps, d_o, grads.norm);
  const GlrShape gs{s.T, s.H, s.H, s.dk, s.dv, true, 1.0 / std::sqrt(static_cast<double>(s.dk))};
  const Vec zero(size_t(s.H) * s.dk * s.dv, 0.0);
  glr_backward(f.q, f.k, f.v, f.g, zero, d_o, zero, gs, dq, dk, dv, dg, dh0);
  logsigmoid_backward(dg, f.pre, p.b_gate, s.T, K, 1.0 / s.normalizer, dpre, grads.b_gate);
  linear_backward(dpre, f.low, p.w_gate2, s.T, s.rank, K, dlow, grads.w_gate2);
  linear_backward(dq, x, p.wq, s.T, s.C, K, dx, grads.wq);
  linear_backward(dk, x, p.wk, s.T, s.C, K, part, grads.wk);
  add_into(dx, part);
  linear_backward(dv, x, p.wv, s.T, s.C, V, part, grads.wv);
  add_into(dx, part);
  linear_backward(dgate, x, p.wg, s.T, s.C, V, part, grads.wg);
  add_into(dx, part);
  linear_backward(dlow, x, p.w_gate1, s.T, s.C, s.rank, part, grads.w_gate1);
  add_into(dx, part);
}

Vec mamba2_layer(const Vec& x, const Mamba2Params& p, const Mamba2Shape& s) {
  return mamba_forward(x, p, s).out;
}

void mamba2_layer_backward(const Vec& x, const Vec& dy, const Mamba2Params& p, const Mamba2Shape& s,
                           Vec& dx, Mamba2Params& grads) {
  const int GN = s.G * s.N, conv_dim = s.DI + 2 * GN, R = 2 * s.DI + 2 * GN + s.NH;
  const MambaForward f = mamba_forward(x, p, s);
  Vec dnormed, dgated, dyy, dz;
  linear_backward(dy, f.normed, p.out_proj, s.T, s.DI, s.C, dnormed, grads.out_proj);
  rmsnorm_backward(dnormed, f.gated, p.norm, s.T, s.DI, s.eps, dgated, grads.norm, s.G);
  silu_gate_backward(dgated, f.y, f.z, dyy, dz);
  // y = o + D xs
  Vec dxs(f.xs.size());
  grads.D.assign(s.NH, 0.0);
  for (size_t e = 0; e < dxs.size(); ++e) {
    const int h = static_cast<int>((e / s.P) % s.NH);
    dxs[e] = p.D[h] * dyy[e];
    grads.D[h] += dyy[e] * f.xs[e];
  }
  Vec dc, db, dv, dg, dh0;
  const GlrShape gs{s.T, s.NH, s.G, s.N, s.P, false, 1.0};
  const Vec zero(size_t(s.NH) * s.N * s.P, 0.0);
  glr_backward(f.c, f.b, f.v, f.g, zero, dyy, zero, gs, dc, db, dv, dg, dh0);
  // v = dt xs
  Vec ddt(size_t(s.T) * s.NH, 0.0);
  for (size_t e = 0; e < dv.size(); ++e) {
    const size_t th = e / s.P;
    dxs[e] += f.dt[th] * dv[e];
    ddt[th] += dv[e] * f.xs[e];
  }
  Vec ddt_raw;
  mamba_dt_backward(ddt, dg, f.dt_raw, p.dt_bias, p.A_log, s.T, s.NH, ddt_raw, grads.dt_bias,
                    grads.A_log);
  Vec dact(size_t(s.T) * conv_dim);
  put_columns(dact, s.T, conv_dim, 0, dxs, s.DI);
  put_columns(dact, s.T, conv_dim, s.DI, db, GN);
  put_columns(dact, s.T, conv_dim, s.DI + GN, dc, GN);
  const Vec dconv = silu_backward(dact, f.conv);
  Vec dxbc, dhalo;
  conv1d_causal_backward(dconv, f.xbc, p.conv_w, Vec(), s.T, conv_dim, s.W, dxbc, grads.conv_w,
                         grads.conv_b, dhalo);
  Vec dproj(size_t(s.T) * R);
  put_columns(dproj, s.T, R, 0, dz, s.DI);
  put_columns(dproj, s.T, R, s.DI, dxbc, conv_dim);
  put_columns(dproj, s.T, R, s.DI + conv_dim, ddt_raw, s.NH);
  linear_backward(dproj, x, p.in_proj, s.T, s.C, R, dx, grads.in_proj);
}

}  // namespace rt::ref
