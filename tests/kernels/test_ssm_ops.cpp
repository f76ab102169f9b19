// The element-wise and convolution ops of the GLA and Mamba-2 layers against the naive
// references: causal conv1d with a halo, SiLU gate, log-sigmoid with bias, grouped RMSNorm,
// Mamba-2's dt/decay, per-head scaling and the D skip.
#include <gtest/gtest.h>

#include "kernels/ops.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::random_tensor;
using testing::rel_rms_error;
using testing::to_vec;

constexpr double kTol = 1e-5;

TEST(SsmOps, Conv1dCausalWithAndWithoutHalo) {
  const int T = 300, C = 40, W = 4;
  Tensor x = random_tensor({T, C}, 1), w = random_tensor({C, W}, 2), b = random_tensor({C}, 3),
         halo = random_tensor({W - 1, C}, 4), dy = random_tensor({T, C}, 5);
  for (bool with_halo : {true, false}) {
    const Tensor h = with_halo ? halo : Tensor();
    const Vec hv = with_halo ? to_vec(halo) : Vec();
    Tensor y = Tensor::empty({T, C});
    ops::conv1d_causal_forward(y, x, w, b, h);
    EXPECT_LT(rel_rms_error(y, ref::conv1d_causal(to_vec(x), to_vec(w), to_vec(b), hv, T, C, W)),
              kTol);
    Tensor dx = Tensor::empty({T, C}), dw = Tensor::zeros({C, W}), db = Tensor::zeros({C}),
           dh = Tensor::empty({W - 1, C});
    ops::conv1d_causal_backward(dx, dw, db, dh, dy, x, w, h);
    Vec dx_ref, dw_ref, db_ref, dh_ref;
    ref::conv1d_causal_backward(to_vec(dy), to_vec(x), to_vec(w), hv, T, C, W, dx_ref, dw_ref,
                                db_ref, dh_ref);
    EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
    EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);
    EXPECT_LT(rel_rms_error(db, db_ref), kTol);
    EXPECT_LT(rel_rms_error(dh, dh_ref), kTol);
  }
}

TEST(SsmOps, SiluGate) {
  Tensor a = random_tensor({50, 8}, 6), g = random_tensor({50, 8}, 7, 3.0f),
         dy = random_tensor({50, 8}, 8);
  Tensor y = Tensor::empty({50, 8}), da = Tensor::empty({50, 8}), dg = Tensor::empty({50, 8});
  ops::silu_gate_forward(y, a, g);
  EXPECT_LT(rel_rms_error(y, ref::silu_gate(to_vec(a), to_vec(g))), kTol);
  ops::silu_gate_backward(da, dg, dy, a, g);
  Vec da_ref, dg_ref;
  ref::silu_gate_backward(to_vec(dy), to_vec(a), to_vec(g), da_ref, dg_ref);
  EXPECT_LT(rel_rms_error(da, da_ref), kTol);
  EXPECT_LT(rel_rms_error(dg, dg_ref), kTol);
}

TEST(SsmOps, LogsigmoidWithBias) {
  const int T = 300, C = 24;
  Tensor x = random_tensor({T, C}, 9, 4.0f), b = random_tensor({C}, 10),
         dy = random_tensor({T, C}, 11);
  Tensor y = Tensor::empty({T, C}), dx = Tensor::empty({T, C}), db = Tensor::zeros({C});
  ops::logsigmoid_forward(y, x, b, 1.0f / 16);
  EXPECT_LT(rel_rms_error(y, ref::logsigmoid(to_vec(x), to_vec(b), T, C, 1.0 / 16)), kTol);
  ops::logsigmoid_backward(dx, db, dy, x, b, 1.0f / 16);
  Vec dx_ref, db_ref;
  ref::logsigmoid_backward(to_vec(dy), to_vec(x), to_vec(b), T, C, 1.0 / 16, dx_ref, db_ref);
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
  EXPECT_LT(rel_rms_error(db, db_ref), kTol);
}

TEST(SsmOps, GroupRMSNorm) {
  const int T = 70, C = 48, groups = 4;
  Tensor x = random_tensor({T, C}, 12), w = random_tensor({C}, 13), dy = random_tensor({T, C}, 14);
  Tensor y = Tensor::empty({T, C}), rstd = Tensor::empty({T, groups});
  ops::rmsnorm_forward(y, rstd, x, w, 1e-5f, groups);
  EXPECT_LT(rel_rms_error(y, ref::rmsnorm(to_vec(x), to_vec(w), T, C, 1e-5, groups)), kTol);
  Tensor dx = Tensor::zeros({T, C}), dw = Tensor::zeros({C});
  ops::rmsnorm_backward(dx, dw, dy, x, w, rstd, groups);
  Vec dx_ref, dw_ref;
  ref::rmsnorm_backward(to_vec(dy), to_vec(x), to_vec(w), T, C, 1e-5, dx_ref, dw_ref, groups);
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
  EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);
}

TEST(SsmOps, MambaDtScaleAndSkip) {
  const int T = 300, H = 4, P = 8;
  Tensor raw = random_tensor({T, H}, 15), bias = random_tensor({H}, 16),
         a_log = random_tensor({H}, 17, 0.5f);
  Tensor dt = Tensor::empty({T, H}), g = Tensor::empty({T, H});
  ops::mamba_dt_forward(dt, g, raw, bias, a_log);
  Vec dt_ref, g_ref;
  ref::mamba_dt(to_vec(raw), to_vec(bias), to_vec(a_log), T, H, dt_ref, g_ref);
  EXPECT_LT(rel_rms_error(dt, dt_ref), kTol);
  EXPECT_LT(rel_rms_error(g, g_ref), kTol);
  Tensor ddt = random_tensor({T, H}, 18), dg = random_tensor({T, H}, 19);
  Tensor draw = Tensor::empty({T, H}), dbias = Tensor::zeros({H}), dalog = Tensor::zeros({H});
  ops::mamba_dt_backward(draw, dbias, dalog, ddt, dg, raw, bias, a_log);
  Vec draw_ref, dbias_ref, dalog_ref;
  ref::mamba_dt_backward(to_vec(ddt), to_vec(dg), to_vec(raw), to_vec(bias), to_vec(a_log), T, H,
                         draw_ref, dbias_ref, dalog_ref);
  EXPECT_LT(rel_rms_error(draw, draw_ref), kTol);
  EXPECT_LT(rel_rms_error(dbias, dbias_ref), kTol);
  EXPECT_LT(rel_rms_error(dalog, dalog_ref), kTol);

  // v = s * x and y = o + d * x, with their gradients written out by hand.
  Tensor x = random_tensor({T, H, P}, 20), s = random_tensor({T, H}, 21),
         o = random_tensor({T, H, P}, 22), d = random_tensor({H}, 23),
         dy = random_tensor({T, H, P}, 24);
  Tensor v = Tensor::empty({T, H, P}), y = Tensor::empty({T, H, P});
  ops::scale_heads_forward(v, x, s);
  ops::skip_heads_forward(y, o, x, d);
  Tensor dx = Tensor::zeros({T, H, P}), ds = Tensor::empty({T, H}), dd = Tensor::zeros({H});
  ops::scale_heads_backward(dx, ds, dy, x, s);
  ops::skip_heads_backward(dx, dd, dy, x, d);
  Vec v_ref(T * H * P), y_ref(T * H * P), dx_ref(T * H * P), ds_ref(T * H, 0.0), dd_ref(H, 0.0);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int p = 0; p < P; ++p) {
        const int i = (t * H + h) * P + p;
        const double xs = x.f32()[i], sv = s.f32()[t * H + h], dv = d.f32()[h], g2 = dy.f32()[i];
        v_ref[i] = sv * xs;
        y_ref[i] = o.f32()[i] + dv * xs;
        dx_ref[i] = sv * g2 + dv * g2;
        ds_ref[t * H + h] += xs * g2;
        dd_ref[h] += xs * g2;
      }
  EXPECT_LT(rel_rms_error(v, v_ref), kTol);
  EXPECT_LT(rel_rms_error(y, y_ref), kTol);
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
  EXPECT_LT(rel_rms_error(ds, ds_ref), kTol);
  EXPECT_LT(rel_rms_error(dd, dd_ref), kTol);
}

}  // namespace
}  // namespace rt
