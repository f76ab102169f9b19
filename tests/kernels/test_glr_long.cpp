// The chunked recurrence against the float64 token-by-token reference at 4K, 32K and 128K
// tokens, per-channel (GLA) and per-head (Mamba-2) decay, strong (~-0.7 a token), GLA-like
// (~-0.04) and weak (~-7e-4, a memory of ~1500 tokens). dq, dk, dv stay at f32 rounding at
// any T; so must dg and the sums the layers make of it (A_log's sum_t dg g, the biases' sum_t
// dg), which an unanchored suffix sum over the whole sequence lets drift (3e-4 at 32K, 1e-3 at
// 128K before kernels/cpu/glr.cpp anchored dg at every chunk).
#include <gtest/gtest.h>

#include "tests/kernels/glr_inputs.h"

namespace rt {
namespace {

using testing::GlrCase;

void check_long(const GlrCase& c) {
  const testing::GlrErrors e = testing::glr_errors_against_float64(c, 7);
  EXPECT_LT(e.dq, 1e-6);
  EXPECT_LT(e.dk, 1e-6);
  EXPECT_LT(e.dv, 1e-6);
  EXPECT_LT(e.dg, 2e-6);
  EXPECT_LT(e.sum_dg_g, 1e-4);
  EXPECT_LT(e.sum_dg, 1e-4);
}

// {T, H, Hg, dk, dv, vector_decay, chunk, normalizer, with_h0, with_dh_final}
GlrCase gla(int T, double normalizer) {
  return {T, 2, 2, 16, 32, true, 64, normalizer, false, false};
}
GlrCase mamba2(int T, double normalizer) {
  return {T, 4, 1, 16, 16, false, 64, normalizer, false, false};
}

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
