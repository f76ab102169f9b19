// The chunked recurrence against the float64 token-by-token reference at 4K, 32K and 128K
// tokens, per-channel (GLA) and per-head (Mamba-2) decay, strong (~-0.7 a token), GLA-like
// (~-0.04) and weak (~-7e-4, a memory of ~1500 tokens). dq, dk, dv stay at f32 rounding at
// any T; so must dg and the sums the layers make of it (A_log's sum_t dg g, the biases' sum_t
// dg), which an unanchored suffix sum over the whole sequence lets drift (3e-4 at 32K, 1e-3 at
// 128K before kernels/cpu/glr.cpp anchored dg at every chunk).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ops.h"
#include "tests/kernels/glr_inputs.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::decay_sums;
using testing::GlrCase;
using testing::rel_rms_error;
using testing::to_vec;

void check_long(GlrCase c) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  testing::GlrInputs in(c, 7);
  Tensor states = Tensor::empty({(c.T + c.chunk - 1) / c.chunk + 1, c.H, c.dk, c.dv});
  ops::glr_forward(Tensor(), Tensor(), states, in.q, in.k, in.v, in.g, Tensor(), scale, c.chunk);
  Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
         dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape());
  ops::glr_backward(dq, dk, dv, dg, Tensor(), in.q, in.k, in.v, in.g, states, in.dout, Tensor(), scale, c.chunk);

  const ref::GlrShape s{c.T, c.H, c.Hg, c.dk, c.dv, c.vector_decay, scale};
  const Vec g = to_vec(in.g), zero(static_cast<size_t>(c.H) * c.dk * c.dv, 0.0);
  Vec dq_ref, dk_ref, dv_ref, dg_ref, dh0_ref;
  ref::glr_backward(to_vec(in.q), to_vec(in.k), to_vec(in.v), g, zero, to_vec(in.dout), zero, s, dq_ref,
                    dk_ref, dv_ref, dg_ref, dh0_ref);
  const Vec dg_got = to_vec(dg);
  EXPECT_LT(rel_rms_error(dq, dq_ref), 1e-6);
  EXPECT_LT(rel_rms_error(dk, dk_ref), 1e-6);
  EXPECT_LT(rel_rms_error(dv, dv_ref), 1e-6);
  EXPECT_LT(rel_rms_error(dg_got, dg_ref), 2e-6);
  EXPECT_LT(rel_rms_error(decay_sums(dg_got, g, c.T, true), decay_sums(dg_ref, g, c.T, true)), 1e-4);
  EXPECT_LT(rel_rms_error(decay_sums(dg_got, g, c.T, false), decay_sums(dg_ref, g, c.T, false)), 1e-4);
}

// {T, H, Hg, dk, dv, vector_decay, chunk, normalizer, with_h0, with_dh_final}
GlrCase gla(int T, double normalizer) { return {T, 2, 2, 16, 32, true, 64, normalizer, false, false}; }
GlrCase mamba2(int T, double normalizer) { return {T, 4, 1, 16, 16, false, 64, normalizer, false, false}; }

TEST(GlrLong, VectorDecayStrong4K) { check_long(gla(4096, 1.0)); }
TEST(GlrLong, VectorDecayStrong32K) { check_long(gla(32768, 1.0)); }
TEST(GlrLong, VectorDecayStrong128K) { check_long(gla(131072, 1.0)); }
TEST(GlrLong, VectorDecayGla128K) { check_long(gla(131072, 16.0)); }
TEST(GlrLong, VectorDecayWeak4K) { check_long(gla(4096, 1000.0)); }
TEST(GlrLong, VectorDecayWeak32K) { check_long(gla(32768, 1000.0)); }
TEST(GlrLong, VectorDecayWeak128K) { check_long(gla(131072, 1000.0)); }
TEST(GlrLong, ScalarDecayStrong4K) { check_long(mamba2(4096, 1.0)); }
TEST(GlrLong, ScalarDecayStrong32K) { check_long(mamba2(32768, 1.0)); }
TEST(GlrLong, ScalarDecayStrong128K) { check_long(mamba2(131072, 1.0)); }
TEST(GlrLong, ScalarDecayGla128K) { check_long(mamba2(131072, 16.0)); }
TEST(GlrLong, ScalarDecayWeak4K) { check_long(mamba2(4096, 1000.0)); }
TEST(GlrLong, ScalarDecayWeak32K) { check_long(mamba2(32768, 1000.0)); }
TEST(GlrLong, ScalarDecayWeak128K) { check_long(mamba2(131072, 1000.0)); }

}  // namespace
}  // namespace rt
