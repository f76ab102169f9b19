// The GLA and Mamba-2 layers in float64, composed of the naive references of naive.h and
// written from the layers' math (model/gla.h, model/mamba2.h), for one sequence that starts at
// position 0. Used to check the layers' parameter gradients at long T, where the f32 sums over
// every token are what can go wrong.
#pragma once

#include "tests/reference/naive.h"

namespace rt::ref {

// GLA: q, k = x Wq^T, x Wk^T [T, H, dk]; v = x Wv^T [T, H, dv];
// g = logsigmoid((x W1^T) W2^T + b_gate) / normalizer; o = GLR(q, k, v, g, scale dk^-1/2);
// y = (RMSNorm_head(o) * silu(x Wg^T)) Wo^T
struct GlaShape {
  int T, C, H, dk, dv, rank;
  double normalizer, eps;
};
struct GlaParams {
  Vec wq, wk, wv, wg, w_gate1, w_gate2, b_gate, norm, wo;
};
// Returns y [T, C]; with dy: dx and every parameter's gradient in grads.
Vec gla_layer(const Vec& x, const GlaParams& p, const GlaShape& s);
void gla_layer_backward(const Vec& x, const Vec& dy, const GlaParams& p, const GlaShape& s, Vec& dx,
                        GlaParams& grads);

// Mamba-2: in_proj rows z | x | B | C | dt; conv + silu over x, B, C; dt = softplus(dt_raw +
// dt_bias), g = -exp(A_log) dt; o = GLR(q = C, k = B, v = dt x, g, scale 1) per head (groups of
// heads share B, C); y = RMSNorm_group((o + D x) * silu(z)) out_proj^T.
struct Mamba2Shape {
  int T, C, DI, NH, P, N, G, W;
  double eps;
};
struct Mamba2Params {
  Vec in_proj, conv_w, conv_b, dt_bias, A_log, D, norm, out_proj;
};
Vec mamba2_layer(const Vec& x, const Mamba2Params& p, const Mamba2Shape& s);
void mamba2_layer_backward(const Vec& x, const Vec& dy, const Mamba2Params& p, const Mamba2Shape& s,
                           Vec& dx, Mamba2Params& grads);

}  // namespace rt::ref
