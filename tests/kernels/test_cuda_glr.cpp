// The gated linear recurrence on CUDA against the CPU ops, through rt::ops (which dispatches on
// the tensors' device): forward (o, h_final, states), backward (dq, dk, dv, dg, dh0), both decay
// kinds, shared q/k groups, lengths that are not multiples of the chunk, chunks of 16 to 256,
// with and without h0 and dh_final, several column tiles (dv > 32), the largest dk; then the
// state-passing pieces (chunk summary, state gradient, state scan both ways) and the
// determinism of the grouped backward. Skips where no GPU is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/device.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "tests/kernels/glr_inputs.h"
#include "tests/testing.h"

namespace rt {
namespace {

using testing::rel_rms_error;
using testing::to_vec;

constexpr double kTol = 1e-5;
// dg under strong decay (g down to about -30 per step): the CPU and the GPU both form dg from the
// identity dg_t = sum_{t' >= t} (q dq - k dk) + ..., restarted at every chunk (CPU) or piece
// (GPU) from that chunk's anchor sum_v S dS, whose short suffix sums still cancel to a much
// smaller result, so each sits a few 1e-6 from a double reference (measured before the
// anchoring: the CPU ~2e-6, this GPU version ~4e-6 in a host emulation); their difference may
// then exceed 1e-5 by rounding alone.
constexpr double kStrongDgTol = 1e-4;

// Copies between the devices: to_device (kernels/tensor.h).
Tensor to_cuda(const Tensor& t) { return to_device(t, Device::CUDA); }
Tensor to_host(const Tensor& t) { return to_device(t, Device::CPU); }

// A CUDA output filled with NaN, so that an entry the op fails to write shows up as an error.
Tensor poisoned_cuda(Shape shape) {
  Tensor h = Tensor::empty(shape);
  std::fill(h.f32(), h.f32() + h.numel(), std::numeric_limits<float>::quiet_NaN());
  return to_cuda(h);
}

void expect_close(const Tensor& got_cuda, const Tensor& want_cpu, double tol, const char* what) {
  const double err = rel_rms_error(to_host(got_cuda), to_vec(want_cpu));
  EXPECT_LT(err, tol) << what;  // NaN (an unwritten entry) fails too
}

using testing::GlrCase;
using testing::GlrInputs;

// The same inputs on the GPU.
struct CudaInputs {
  explicit CudaInputs(const GlrInputs& in)
      : q(to_cuda(in.q)),
        k(to_cuda(in.k)),
        v(to_cuda(in.v)),
        g(to_cuda(in.g)),
        h0(to_cuda(in.h0)),
        dout(to_cuda(in.dout)),
        dh_final(to_cuda(in.dh_final)) {}
  Tensor q, k, v, g, h0, dout, dh_final;
};

void check_glr(const GlrCase& c, uint64_t seed, double dg_tol = kTol) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  const GlrInputs in(c, seed);
  const CudaInputs dev(in);
  const int64_t chunks = (c.T + c.chunk - 1) / c.chunk;
  const Shape o_shape{c.T, c.H, c.dv}, state{c.H, c.dk, c.dv},
      states_shape{chunks + 1, c.H, c.dk, c.dv};

  Tensor o = Tensor::empty(o_shape), h_final = Tensor::empty(state),
         states = Tensor::empty(states_shape);
  ops::glr_forward(o, h_final, states, in.q, in.k, in.v, in.g, in.h0, scale, c.chunk);
  Tensor o_d = poisoned_cuda(o_shape), h_final_d = poisoned_cuda(state),
         states_d = poisoned_cuda(states_shape);
  ops::glr_forward(o_d, h_final_d, states_d, dev.q, dev.k, dev.v, dev.g, dev.h0, scale, c.chunk);
  expect_close(o_d, o, kTol, "o");
  expect_close(h_final_d, h_final, kTol, "h_final");
  expect_close(states_d, states, kTol, "states");

  Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
         dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape()),
         dh0 = Tensor::empty(state);
  ops::glr_backward(dq, dk, dv, dg, dh0, in.q, in.k, in.v, in.g, states, in.dout, in.dh_final,
                    scale, c.chunk);
  Tensor dq_d = poisoned_cuda(in.q.shape()), dk_d = poisoned_cuda(in.k.shape()),
         dv_d = poisoned_cuda(in.v.shape()), dg_d = poisoned_cuda(in.g.shape()),
         dh0_d = poisoned_cuda(state);
  ops::glr_backward(dq_d, dk_d, dv_d, dg_d, dh0_d, dev.q, dev.k, dev.v, dev.g, states_d, dev.dout,
                    dev.dh_final, scale, c.chunk);
  expect_close(dq_d, dq, kTol, "dq");
  expect_close(dk_d, dk, kTol, "dk");
  expect_close(dv_d, dv, kTol, "dv");
  expect_close(dg_d, dg, dg_tol, "dg");
  expect_close(dh0_d, dh0, kTol, "dh0");
}

// GLA-shaped: per-channel decay (one q/k group per head).
TEST(CudaGlr, VectorDecayChunk16) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({37, 2, 2, 16, 32, true, 16, 16.0, true, true}, 1);
}
TEST(CudaGlr, VectorDecayChunk64NoH0NoDhFinal) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 2, 2, 16, 40, true, 64, 1.0, false, false}, 2);
}
TEST(CudaGlr, VectorDecayWideState) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 3, 3, 64, 96, true, 64, 4.0, true, true}, 3);  // three column tiles
}
// Chunks longer than the kernels' 128-row pieces: 200 = 128 + 72 rows, the last chunk 50 rows
// and an empty piece; the backward recomputes the states of the pieces inside a chunk.
TEST(CudaGlr, VectorDecayChunkOfSeveralPieces) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({250, 2, 2, 16, 24, true, 200, 4.0, true, true}, 10);
}
TEST(CudaGlr, ScalarDecayChunk256) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({300, 4, 2, 16, 20, false, 256, 4.0, true, true}, 11);
}
TEST(CudaGlr, VectorDecayLargestDk) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({37, 1, 1, 256, 8, true, 16, 4.0, true, true}, 4);
}
TEST(CudaGlr, VectorDecayStrong) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 2, 2, 16, 32, true, 16, 0.1, true, true}, 5, kStrongDgTol);
}
// Mamba-2-shaped: one decay per head, q/k shared by groups of heads.
TEST(CudaGlr, ScalarDecayGroupsChunk16) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 4, 1, 16, 16, false, 16, 16.0, true, true}, 6);
}
TEST(CudaGlr, ScalarDecayGroupsChunk64) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({37, 4, 2, 8, 70, false, 64, 1.0, true, false}, 7);
}
TEST(CudaGlr, ScalarDecayNoGroups) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 3, 3, 12, 33, false, 16, 4.0, false, true}, 8);
}
TEST(CudaGlr, ScalarDecayStrong) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_glr({100, 4, 2, 16, 16, false, 64, 0.1, true, true}, 9, kStrongDgTol);
}

// The forward without outputs (o and q undefined): only the states.
TEST(CudaGlr, ForwardStatesOnly) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const GlrCase c{100, 4, 2, 16, 24, false, 16, 4.0, true, false};
  const GlrInputs in(c, 10);
  const CudaInputs dev(in);
  const Shape states_shape{(c.T + c.chunk - 1) / c.chunk + 1, c.H, c.dk, c.dv};
  Tensor states = Tensor::empty(states_shape);
  ops::glr_forward(Tensor(), Tensor(), states, Tensor(), in.k, in.v, in.g, in.h0, 1.0f, c.chunk);
  Tensor states_d = poisoned_cuda(states_shape);
  ops::glr_forward(Tensor(), Tensor(), states_d, Tensor(), dev.k, dev.v, dev.g, dev.h0, 1.0f,
                   c.chunk);
  expect_close(states_d, states, kTol, "states");
}

TEST(CudaGlr, ChunkSummaryAndStateGradient) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  for (bool vector_decay : {true, false}) {
    SCOPED_TRACE(vector_decay ? "vector decay" : "scalar decay");
    for (int64_t chunk : {16, 64, 100, 200}) {
      SCOPED_TRACE(chunk);
      const GlrCase c{130, 4, vector_decay ? 4 : 2, 16, 40, vector_decay, chunk, 4.0, false, false};
      const GlrInputs in(c, 20);
      const CudaInputs dev(in);
      const Shape state{c.H, c.dk, c.dv};
      const Shape gamma_shape = vector_decay ? Shape{c.H, c.dk} : Shape{c.H};

      Tensor s_loc = Tensor::empty(state), gamma = Tensor::empty(gamma_shape);
      ops::glr_chunk_summary(s_loc, gamma, in.k, in.v, in.g, chunk);
      Tensor s_loc_d = poisoned_cuda(state), gamma_d = poisoned_cuda(gamma_shape);
      ops::glr_chunk_summary(s_loc_d, gamma_d, dev.k, dev.v, dev.g, chunk);
      expect_close(s_loc_d, s_loc, kTol, "s_loc");
      expect_close(gamma_d, gamma, kTol, "gamma");

      Tensor ds = Tensor::empty(state);
      ops::glr_state_gradient(ds, in.q, in.g, in.dout, 0.5f, chunk);
      Tensor ds_d = poisoned_cuda(state);
      ops::glr_state_gradient(ds_d, dev.q, dev.g, dev.dout, 0.5f, chunk);
      expect_close(ds_d, ds, kTol, "ds");
    }
  }
}

TEST(CudaGlr, StateScanBothWays) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int n = 7, H = 3, dk = 16, dv = 40;
  for (bool vector_decay : {true, false}) {
    SCOPED_TRACE(vector_decay ? "vector decay" : "scalar decay");
    const Tensor s_loc = testing::random_tensor({n, H, dk, dv}, 40);
    Tensor gamma =
        vector_decay ? testing::random_tensor({n, H, dk}, 41) : testing::random_tensor({n, H}, 41);
    for (int64_t i = 0; i < gamma.numel(); ++i) gamma.f32()[i] = -0.3f * std::fabs(gamma.f32()[i]);
    const Tensor s_loc_d = to_cuda(s_loc), gamma_d = to_cuda(gamma);
    for (bool reverse : {false, true}) {
      SCOPED_TRACE(reverse ? "reverse" : "forward");
      Tensor out = Tensor::empty({n + 1, H, dk, dv});
      ops::glr_state_scan(out, s_loc, gamma, reverse);
      Tensor out_d = poisoned_cuda({n + 1, H, dk, dv});
      ops::glr_state_scan(out_d, s_loc_d, gamma_d, reverse);
      expect_close(out_d, out, kTol, "out");
    }
  }
}

// dq and dk of a q/k group add the heads' parts in a fixed order: the same bits every run.
TEST(CudaGlr, BackwardIsDeterministicWithSharedGroups) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const GlrCase c{200, 4, 1, 16, 48, false, 64, 4.0, true, true};
  const GlrInputs in(c, 30);
  const CudaInputs dev(in);
  Tensor states = Tensor::empty({5, c.H, c.dk, c.dv}, DType::F32, Device::CUDA);
  ops::glr_forward(Tensor(), Tensor(), states, Tensor(), dev.k, dev.v, dev.g, dev.h0, 1.0f,
                   c.chunk);
  ref::Vec first;
  for (int run = 0; run < 3; ++run) {
    Tensor dq = poisoned_cuda(in.q.shape()), dk = poisoned_cuda(in.k.shape()),
           dv = poisoned_cuda(in.v.shape()), dg = poisoned_cuda(in.g.shape());
    ops::glr_backward(dq, dk, dv, dg, Tensor(), dev.q, dev.k, dev.v, dev.g, states, dev.dout,
                      dev.dh_final, 1.0f, c.chunk);
    ref::Vec all = to_vec(to_host(dq));
    for (const Tensor* t : {&dk, &dv, &dg})
      for (double x : to_vec(to_host(*t))) all.push_back(x);
    if (run == 0)
      first = all;
    else
      EXPECT_EQ(all, first);
  }
}

}  // namespace
}  // namespace rt
