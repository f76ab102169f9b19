// The chunked gated linear recurrence against the token-by-token reference: outputs, final
// state, dq, dk, dv, dg, dh0, for both decay kinds, lengths that are not multiples of the chunk,
// chunks of 16, 64 and 256, strong and weak decay, non-zero h0 and dh_final, and shared q/k
// groups. Also the two state-passing pieces (chunk summary, state gradient).
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "kernels/ops.h"
#include "tests/kernels/glr_inputs.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::rel_rms_error;
using testing::to_vec;

constexpr double kTol = 1e-5;

using testing::GlrCase;
using testing::GlrInputs;

ref::GlrShape shape_of(const GlrCase& c, double scale) {
  return {c.T, c.H, c.Hg, c.dk, c.dv, c.vector_decay, scale};
}

void check_glr(const GlrCase& c, uint64_t seed) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  GlrInputs in(c, seed);
  const int64_t chunks = (c.T + c.chunk - 1) / c.chunk;
  Tensor o = Tensor::empty({c.T, c.H, c.dv}), h_final = Tensor::empty({c.H, c.dk, c.dv});
  Tensor states = Tensor::empty({chunks + 1, c.H, c.dk, c.dv});
  ops::glr_forward(o, h_final, states, in.q, in.k, in.v, in.g, in.h0, scale, c.chunk);
  Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
         dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape()),
         dh0 = Tensor::empty(in.h0.shape());
  ops::glr_backward(dq, dk, dv, dg, dh0, in.q, in.k, in.v, in.g, states, in.dout, in.dh_final,
                    scale, c.chunk);

  const ref::GlrShape s = shape_of(c, scale);
  Vec o_ref, hf_ref, dq_ref, dk_ref, dv_ref, dg_ref, dh0_ref;
  ref::glr(to_vec(in.q), to_vec(in.k), to_vec(in.v), to_vec(in.g), to_vec(in.h0), s, o_ref, hf_ref);
  ref::glr_backward(to_vec(in.q), to_vec(in.k), to_vec(in.v), to_vec(in.g), to_vec(in.h0),
                    to_vec(in.dout), to_vec(in.dh_final), s, dq_ref, dk_ref, dv_ref, dg_ref,
                    dh0_ref);
  EXPECT_LT(rel_rms_error(o, o_ref), kTol);
  EXPECT_LT(rel_rms_error(h_final, hf_ref), kTol);
  EXPECT_LT(rel_rms_error(dq, dq_ref), kTol);
  EXPECT_LT(rel_rms_error(dk, dk_ref), kTol);
  EXPECT_LT(rel_rms_error(dv, dv_ref), kTol);
  EXPECT_LT(rel_rms_error(dg, dg_ref), kTol);
  EXPECT_LT(rel_rms_error(dh0, dh0_ref), kTol);
}

// GLA-shaped: per-channel decay.
TEST(Glr, VectorDecayChunk16) { check_glr({150, 2, 2, 16, 32, true, 16, 16.0}, 1); }
TEST(Glr, VectorDecayChunk64) { check_glr({150, 2, 2, 16, 32, true, 64, 16.0}, 2); }
TEST(Glr, VectorDecayChunk256) { check_glr({300, 2, 2, 16, 32, true, 256, 16.0}, 3); }
TEST(Glr, VectorDecayStrong) { check_glr({150, 2, 2, 16, 32, true, 64, 0.1}, 4); }
TEST(Glr, VectorDecayOddChunk) { check_glr({77, 1, 1, 8, 8, true, 40, 1.0}, 5); }
// Mamba-2-shaped: one decay per head, q/k shared by groups of heads.
TEST(Glr, ScalarDecayChunk16) { check_glr({150, 4, 1, 16, 16, false, 16, 16.0}, 6); }
TEST(Glr, ScalarDecayChunk64) { check_glr({150, 4, 2, 16, 16, false, 64, 16.0}, 7); }
TEST(Glr, ScalarDecayChunk256) { check_glr({300, 4, 2, 16, 16, false, 256, 16.0}, 8); }
TEST(Glr, ScalarDecayStrong) { check_glr({150, 4, 1, 16, 16, false, 64, 0.1}, 9); }
TEST(Glr, ScalarDecayNoGroups) { check_glr({99, 3, 3, 8, 12, false, 32, 1.0}, 10); }

// The key widths the diagonal blocks are instantiated for (64, 128), with chunks that are not
// multiples of the 16-row sub-blocks.
TEST(Glr, VectorDecayKeyWidth64Chunk40) { check_glr({150, 2, 2, 64, 16, true, 40, 4.0}, 11); }
TEST(Glr, VectorDecayKeyWidth128Chunk256) { check_glr({300, 1, 1, 128, 8, true, 256, 16.0}, 12); }
// No tokens: the state passes through, h_final = h0 and dh0 = dh_final.
TEST(Glr, NoTokens) {
  for (bool vector_decay : {true, false}) {
    const GlrCase c{0, 2, vector_decay ? 2 : 1, 8, 8, vector_decay, 64, 1.0};
    GlrInputs in(c, 13);
    Tensor o = Tensor::empty({0, c.H, c.dv}), h_final = Tensor::empty({c.H, c.dk, c.dv});
    Tensor states = Tensor::empty({1, c.H, c.dk, c.dv}), dh0 = Tensor::empty({c.H, c.dk, c.dv});
    ops::glr_forward(o, h_final, states, in.q, in.k, in.v, in.g, in.h0, 0.5f, c.chunk);
    EXPECT_EQ(to_vec(h_final), to_vec(in.h0));
    Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
           dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape());
    ops::glr_backward(dq, dk, dv, dg, dh0, in.q, in.k, in.v, in.g, states, in.dout, in.dh_final,
                      0.5f, c.chunk);
    EXPECT_EQ(to_vec(dh0), to_vec(in.dh_final));
  }
}

// Threads take contiguous blocks of heads; a q/k group's heads may straddle two threads, whose
// dq, dk are summed at the end. Every team size from 1 to more threads than heads.
TEST(Glr, SharedGroupsOnAnyTeam) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3, 5, 8, 9}) {
    omp_set_num_threads(threads);
    check_glr({97, 8, 2, 16, 8, false, 40, 4.0}, 14);
    check_glr({97, 6, 3, 8, 16, false, 16, 1.0}, 15);
    check_glr({97, 3, 3, 16, 8, true, 40, 4.0}, 16);
  }
  omp_set_num_threads(saved);
}

TEST(Glr, ChunkSummaryAndStateGradient) {
  for (bool vector_decay : {true, false}) {
    const GlrCase c{130, 2, 2, 8, 16, vector_decay, 32, 4.0};
    GlrInputs in(c, 20);
    const int gw = vector_decay ? c.dk : 1;
    Tensor s_loc = Tensor::empty({c.H, c.dk, c.dv});
    Tensor gamma = vector_decay ? Tensor::empty({c.H, c.dk}) : Tensor::empty({c.H});
    ops::glr_chunk_summary(s_loc, gamma, in.k, in.v, in.g, c.chunk);
    const ref::GlrShape s = shape_of(c, 0.5);
    Vec o, s_ref;
    ref::glr(to_vec(in.q), to_vec(in.k), to_vec(in.v), to_vec(in.g), Vec(c.H * c.dk * c.dv, 0.0), s,
             o, s_ref);
    EXPECT_LT(rel_rms_error(s_loc, s_ref), kTol);
    Vec gamma_ref(c.H * gw, 0.0);
    for (int t = 0; t < c.T; ++t)
      for (int i = 0; i < c.H * gw; ++i) gamma_ref[i] += in.g.f32()[t * c.H * gw + i];
    EXPECT_LT(rel_rms_error(gamma, gamma_ref), kTol);

    Tensor ds = Tensor::empty({c.H, c.dk, c.dv});
    ops::glr_state_gradient(ds, in.q, in.g, in.dout, 0.5f, c.chunk);
    Vec dq, dk, dv, dg, dh0;
    ref::glr_backward(to_vec(in.q), to_vec(in.k), to_vec(in.v), to_vec(in.g), to_vec(in.h0),
                      to_vec(in.dout), Vec(c.H * c.dk * c.dv, 0.0), s, dq, dk, dv, dg, dh0);
    EXPECT_LT(rel_rms_error(ds, dh0), kTol) << "vector decay " << vector_decay;
  }
}

TEST(Glr, BackwardIsDeterministicWithSharedGroups) {
  const GlrCase c{200, 4, 1, 16, 16, false, 64, 4.0};
  GlrInputs in(c, 30);
  Tensor states = Tensor::empty({5, c.H, c.dk, c.dv});
  ops::glr_forward(Tensor(), Tensor(), states, in.q, in.k, in.v, in.g, in.h0, 1.0f, c.chunk);
  Vec first;
  for (int run = 0; run < 3; ++run) {
    Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
           dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape());
    ops::glr_backward(dq, dk, dv, dg, Tensor(), in.q, in.k, in.v, in.g, states, in.dout, Tensor(),
                      1.0f, c.chunk);
    Vec all = to_vec(dq);
    for (double x : to_vec(dk)) all.push_back(x);
    if (run == 0)
      first = all;
    else
      EXPECT_EQ(all, first);
  }
}

}  // namespace
}  // namespace rt
