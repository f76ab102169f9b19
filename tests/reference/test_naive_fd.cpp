// The naive references pass finite-difference checks: each backward is the gradient of its
// forward, for the scalar loss L = sum(forward(x) * R) with a random R.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "tests/reference/naive.h"
#include "tests/reference/naive_layers.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::max_fd_error;
using testing::random_vec;

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

constexpr double kTol = 1e-6;

TEST(NaiveFD, Linear) {
  const int T = 5, C = 7, OC = 4;
  Vec x = random_vec(T * C, 1), w = random_vec(OC * C, 2), R = random_vec(T * OC, 3);
  Vec dx, dw;
  ref::linear_backward(R, x, w, T, C, OC, dx, dw);
  EXPECT_LT(
      max_fd_error([&](const Vec& xx) { return dot(ref::linear(xx, w, T, C, OC), R); }, x, dx),
      kTol);
  EXPECT_LT(
      max_fd_error([&](const Vec& ww) { return dot(ref::linear(x, ww, T, C, OC), R); }, w, dw),
      kTol);
}

TEST(NaiveFD, Embedding) {
  const int V = 6, C = 3;
  std::vector<int32_t> tok = {1, 4, 1, 0, 5, 1};
  Vec table = random_vec(V * C, 4), R = random_vec(tok.size() * C, 5);
  Vec dt = ref::embedding_backward(tok, R, V, C);
  EXPECT_LT(
      max_fd_error([&](const Vec& tt) { return dot(ref::embedding(tok, tt, C), R); }, table, dt),
      kTol);
}

TEST(NaiveFD, RMSNorm) {
  const int T = 4, C = 9;
  const double eps = 1e-5;
  Vec x = random_vec(T * C, 6), w = random_vec(C, 7), R = random_vec(T * C, 8);
  Vec dx, dw;
  ref::rmsnorm_backward(R, x, w, T, C, eps, dx, dw);
  EXPECT_LT(
      max_fd_error([&](const Vec& xx) { return dot(ref::rmsnorm(xx, w, T, C, eps), R); }, x, dx),
      kTol);
  EXPECT_LT(
      max_fd_error([&](const Vec& ww) { return dot(ref::rmsnorm(x, ww, T, C, eps), R); }, w, dw),
      kTol);
}

TEST(NaiveFD, SiluAndSwiGLU) {
  Vec x = random_vec(40, 9, 3.0), R = random_vec(40, 10);
  EXPECT_LT(max_fd_error([&](const Vec& xx) { return dot(ref::silu(xx), R); }, x,
                         ref::silu_backward(R, x)),
            kTol);
  const int T = 4, F = 5;
  Vec gu = random_vec(T * 2 * F, 11, 2.0), Ry = random_vec(T * F, 12);
  EXPECT_LT(max_fd_error([&](const Vec& g) { return dot(ref::swiglu(g, T, F), Ry); }, gu,
                         ref::swiglu_backward(Ry, gu, T, F)),
            kTol);
}

TEST(NaiveFD, Rope) {
  const int T = 5, H = 2, D = 8;
  std::vector<int32_t> pos = {0, 3, 17, 1000, 1 << 20};
  Vec x = random_vec(T * H * D, 13), R = random_vec(T * H * D, 14);
  Vec dx = ref::rope_backward(R, pos, T, H, D, 10000.0);
  EXPECT_LT(max_fd_error(
                [&](const Vec& xx) { return dot(ref::rope(xx, pos, T, H, D, 10000.0), R); }, x, dx),
            kTol);
}

void check_attention(const ref::AttentionShape& s, uint64_t seed) {
  Vec q = random_vec(size_t(s.Tq) * s.H * s.D, seed),
      k = random_vec(size_t(s.Tk) * s.Hkv * s.D, seed + 1),
      v = random_vec(size_t(s.Tk) * s.Hkv * s.D, seed + 2),
      R = random_vec(size_t(s.Tq) * s.H * s.D, seed + 3);
  Vec dq, dk, dv;
  ref::attention_backward(R, q, k, v, s, dq, dk, dv);
  auto loss = [&](const Vec& qq, const Vec& kk, const Vec& vv) {
    Vec out, lse;
    ref::attention(qq, kk, vv, s, out, lse);
    return dot(out, R);
  };
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(x, k, v); }, q, dq), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, x, v); }, k, dk), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, k, x); }, v, dv), kTol);
}

TEST(NaiveFD, AttentionCausal) { check_attention({6, 6, 2, 2, 4, 0, 0, true}, 20); }
TEST(NaiveFD, AttentionFull) { check_attention({5, 7, 2, 1, 4, 0, 0, false}, 30); }
TEST(NaiveFD, AttentionGQAOffsetCausal) { check_attention({5, 8, 4, 2, 4, 10, 6, true}, 40); }

TEST(NaiveFD, LMHeadLoss) {
  const int T = 5, C = 4, V = 7;
  std::vector<int32_t> tg = {3, -1, 0, 6, 3};
  Vec h = random_vec(T * C, 50), w = random_vec(V * C, 51);
  Vec dh, dw;
  ref::lm_head_loss_backward(h, w, tg, T, C, V, dh, dw);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return ref::lm_head_loss(x, w, tg, T, C, V); }, h, dh),
            kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return ref::lm_head_loss(h, x, tg, T, C, V); }, w, dw),
            kTol);
}

TEST(NaiveFD, GroupRMSNorm) {
  const int T = 3, C = 12, groups = 3;
  Vec x = random_vec(T * C, 80), w = random_vec(C, 81), R = random_vec(T * C, 82);
  Vec dx, dw;
  ref::rmsnorm_backward(R, x, w, T, C, 1e-5, dx, dw, groups);
  EXPECT_LT(
      max_fd_error([&](const Vec& xx) { return dot(ref::rmsnorm(xx, w, T, C, 1e-5, groups), R); },
                   x, dx),
      kTol);
  EXPECT_LT(
      max_fd_error([&](const Vec& ww) { return dot(ref::rmsnorm(x, ww, T, C, 1e-5, groups), R); },
                   w, dw),
      kTol);
}

TEST(NaiveFD, SiluGateAndLogsigmoid) {
  Vec a = random_vec(30, 83), gate = random_vec(30, 84, 2.0), R = random_vec(30, 85);
  Vec da, dgate;
  ref::silu_gate_backward(R, a, gate, da, dgate);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return dot(ref::silu_gate(x, gate), R); }, a, da),
            kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return dot(ref::silu_gate(a, x), R); }, gate, dgate),
            kTol);
  const int T = 5, C = 6;
  Vec x = random_vec(T * C, 86, 3.0), b = random_vec(C, 87), Ry = random_vec(T * C, 88);
  Vec dx, db;
  ref::logsigmoid_backward(Ry, x, b, T, C, 1.0 / 16, dx, db);
  EXPECT_LT(
      max_fd_error([&](const Vec& v) { return dot(ref::logsigmoid(v, b, T, C, 1.0 / 16), Ry); }, x,
                   dx),
      kTol);
  EXPECT_LT(
      max_fd_error([&](const Vec& v) { return dot(ref::logsigmoid(x, v, T, C, 1.0 / 16), Ry); }, b,
                   db),
      kTol);
}

TEST(NaiveFD, Conv1dCausalWithHalo) {
  const int T = 7, C = 3, W = 4;
  Vec x = random_vec(T * C, 89), w = random_vec(C * W, 90), b = random_vec(C, 91),
      halo = random_vec((W - 1) * C, 92), R = random_vec(T * C, 93);
  Vec dx, dw, db, dh;
  ref::conv1d_causal_backward(R, x, w, halo, T, C, W, dx, dw, db, dh);
  auto f = [&](const Vec& xx, const Vec& ww, const Vec& bb, const Vec& hh) {
    return dot(ref::conv1d_causal(xx, ww, bb, hh, T, C, W), R);
  };
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(v, w, b, halo); }, x, dx), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(x, v, b, halo); }, w, dw), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(x, w, v, halo); }, b, db), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(x, w, b, v); }, halo, dh), kTol);
}

TEST(NaiveFD, MambaDt) {
  const int T = 4, H = 3;
  Vec raw = random_vec(T * H, 94), bias = random_vec(H, 95), a_log = random_vec(H, 96, 0.5),
      Rd = random_vec(T * H, 97), Rg = random_vec(T * H, 98);
  Vec draw, dbias, dalog;
  ref::mamba_dt_backward(Rd, Rg, raw, bias, a_log, T, H, draw, dbias, dalog);
  auto f = [&](const Vec& r, const Vec& b, const Vec& a) {
    Vec dt, g;
    ref::mamba_dt(r, b, a, T, H, dt, g);
    return dot(dt, Rd) + dot(g, Rg);
  };
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(v, bias, a_log); }, raw, draw), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(raw, v, a_log); }, bias, dbias), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& v) { return f(raw, bias, v); }, a_log, dalog), kTol);
}

// The gated linear recurrence: every input, h0 included, through sum(o R) + sum(h_final Rh).
void check_glr(const ref::GlrShape& s, uint64_t seed) {
  const size_t nq = size_t(s.T) * s.Hg * s.dk, nv = size_t(s.T) * s.H * s.dv,
               ng = size_t(s.T) * s.H * (s.vector_decay ? s.dk : 1), ns = size_t(s.H) * s.dk * s.dv;
  Vec q = random_vec(nq, seed), k = random_vec(nq, seed + 1), v = random_vec(nv, seed + 2),
      g = random_vec(ng, seed + 3), h0 = random_vec(ns, seed + 4), R = random_vec(nv, seed + 5),
      Rh = random_vec(ns, seed + 6);
  for (auto& x : g) x = -std::log1p(std::exp(-x)) / 4;  // logsigmoid / 4: a decay <= 0
  Vec dq, dk, dv, dg, dh0;
  ref::glr_backward(q, k, v, g, h0, R, Rh, s, dq, dk, dv, dg, dh0);
  auto loss = [&](const Vec& qq, const Vec& kk, const Vec& vv, const Vec& gg, const Vec& hh) {
    Vec o, hf;
    ref::glr(qq, kk, vv, gg, hh, s, o, hf);
    return dot(o, R) + dot(hf, Rh);
  };
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(x, k, v, g, h0); }, q, dq), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, x, v, g, h0); }, k, dk), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, k, x, g, h0); }, v, dv), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, k, v, x, h0); }, g, dg), kTol);
  EXPECT_LT(max_fd_error([&](const Vec& x) { return loss(q, k, v, g, x); }, h0, dh0), kTol);
}

TEST(NaiveFD, GlrVectorDecay) { check_glr({7, 2, 2, 3, 4, true, 0.5}, 60); }
TEST(NaiveFD, GlrScalarDecayWithGroups) { check_glr({6, 4, 2, 3, 2, false, 1.0}, 70); }

// Longer than the reference's stretch of recomputed states (256 tokens): three stretches.
TEST(NaiveFD, GlrAcrossRecomputedStretches) { check_glr({600, 1, 1, 2, 3, true, 1.0}, 80); }

// The layer references: the gradient of sum(layer(x) R) for x and every parameter.
template <class Params>
void check_layer(
    const std::function<Vec(const Vec&, const Params&)>& forward,
    const std::function<void(const Vec&, const Vec&, const Params&, Vec&, Params&)>& backward,
    const Vec& x, const Params& p, const Vec& R, const std::vector<Vec Params::*>& members) {
  Vec dx;
  Params grads;
  backward(x, R, p, dx, grads);
  EXPECT_LT(max_fd_error([&](const Vec& xx) { return dot(forward(xx, p), R); }, x, dx), kTol);
  for (size_t m = 0; m < members.size(); ++m) {
    auto loss = [&](const Vec& value) {
      Params q = p;
      q.*members[m] = value;
      return dot(forward(x, q), R);
    };
    EXPECT_LT(max_fd_error(loss, p.*members[m], grads.*members[m]), kTol) << "parameter " << m;
  }
}

TEST(NaiveFD, GlaLayer) {
  const ref::GlaShape s{9, 6, 2, 2, 3, 4, 4.0, 1e-5};
  const int K = s.H * s.dk, V = s.H * s.dv;
  ref::GlaParams p{
      random_vec(K * s.C, 90), random_vec(K * s.C, 91),      random_vec(V * s.C, 92),
      random_vec(V * s.C, 93), random_vec(s.rank * s.C, 94), random_vec(K * s.rank, 95),
      random_vec(K, 96),       random_vec(s.dv, 97),         random_vec(s.C * V, 98)};
  check_layer<ref::GlaParams>(
      [&](const Vec& x, const ref::GlaParams& q) { return ref::gla_layer(x, q, s); },
      [&](const Vec& x, const Vec& dy, const ref::GlaParams& q, Vec& dx, ref::GlaParams& g) {
        ref::gla_layer_backward(x, dy, q, s, dx, g);
      },
      random_vec(s.T * s.C, 99), p, random_vec(s.T * s.C, 100),
      {&ref::GlaParams::wq, &ref::GlaParams::wk, &ref::GlaParams::wv, &ref::GlaParams::wg,
       &ref::GlaParams::w_gate1, &ref::GlaParams::w_gate2, &ref::GlaParams::b_gate,
       &ref::GlaParams::norm, &ref::GlaParams::wo});
}

TEST(NaiveFD, Mamba2Layer) {
  const ref::Mamba2Shape s{9, 5, 8, 4, 2, 3, 2, 3, 1e-5};
  const int GN = s.G * s.N, conv_dim = s.DI + 2 * GN, R = 2 * s.DI + 2 * GN + s.NH;
  ref::Mamba2Params p{random_vec(R * s.C, 110),   random_vec(conv_dim * s.W, 111),
                      random_vec(conv_dim, 112),  random_vec(s.NH, 113),
                      random_vec(s.NH, 114, 0.5), random_vec(s.NH, 115),
                      random_vec(s.DI, 116),      random_vec(s.C * s.DI, 117)};
  check_layer<ref::Mamba2Params>(
      [&](const Vec& x, const ref::Mamba2Params& q) { return ref::mamba2_layer(x, q, s); },
      [&](const Vec& x, const Vec& dy, const ref::Mamba2Params& q, Vec& dx, ref::Mamba2Params& g) {
        ref::mamba2_layer_backward(x, dy, q, s, dx, g);
      },
      random_vec(s.T * s.C, 118), p, random_vec(s.T * s.C, 119),
      {&ref::Mamba2Params::in_proj, &ref::Mamba2Params::conv_w, &ref::Mamba2Params::conv_b,
       &ref::Mamba2Params::dt_bias, &ref::Mamba2Params::A_log, &ref::Mamba2Params::D,
       &ref::Mamba2Params::norm, &ref::Mamba2Params::out_proj});
}

}  // namespace
}  // namespace rt
