// Every CPU op, forward and backward, against the double-precision naive reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/arena.h"
#include "kernels/bf16.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/ops.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::from_vec;
using testing::int_tensor;
using testing::random_tensor;
using testing::rel_rms_error;
using testing::to_vec;

constexpr double kTol = 1e-5;

void linear_case(int T, int OC) {
  const int C = 48;
  SCOPED_TRACE(cat("T ", T, ", OC ", OC));
  Tensor x = random_tensor({T, C}, 1), w = random_tensor({OC, C}, 2),
         dy = random_tensor({T, OC}, 3);
  Tensor y = Tensor::empty({T, OC});
  ops::linear_forward(y, x, w);
  EXPECT_LT(rel_rms_error(y, ref::linear(to_vec(x), to_vec(w), T, C, OC)), kTol);

  Vec dx_ref, dw_ref;
  ref::linear_backward(to_vec(dy), to_vec(x), to_vec(w), T, C, OC, dx_ref, dw_ref);
  Tensor dx = random_tensor({T, C}, 4), dw = random_tensor({OC, C}, 5);
  Vec dx0 = to_vec(dx), dw0 = to_vec(dw);
  ops::linear_backward(dx, dw, dy, x, w, /*accumulate_dinp=*/true);
  for (size_t i = 0; i < dx_ref.size(); ++i) dx_ref[i] += dx0[i];
  for (size_t i = 0; i < dw_ref.size(); ++i) dw_ref[i] += dw0[i];
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
  EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);

  // Overwriting dinp.
  ops::linear_backward(dx, dw, dy, x, w, /*accumulate_dinp=*/false);
  ref::linear_backward(to_vec(dy), to_vec(x), to_vec(w), T, C, OC, dx_ref, dw_ref);
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
}

TEST(Ops, LinearForwardBackward) {
  // (1, 33): the one-row GEMVs of generation; (5, 1): dW of a one-output layer, A transposed.
  for (const auto [T, OC] : {std::pair{37, 33}, {1, 33}, {5, 1}}) linear_case(T, OC);
}

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // a tie: to the even 0x3f80
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // a tie: to the even 0x3f82
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0xbf807fff)), 0xbf80);  // just below, negative
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // the largest f32 rounds to inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00000001)), 0x0000);        // the smallest subnormal to zero
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffffffffu})  // a signalling one included
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(nan))))) << std::hex << nan;
  // Every bf16 value survives the way to f32 and back.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (std::isnan(bf16_to_f32(static_cast<uint16_t>(h)))) continue;
    ASSERT_EQ(f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(h))), h);
  }
  // The op rounds element by element as the function does.
  const Tensor x = random_tensor({300, 7}, 50);
  Tensor x16 = Tensor::empty({300, 7}, DType::BF16);
  ops::to_bf16(x16, x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(x16.bf16()[i], f32_to_bf16(x.f32()[i])) << i;
}

// v with every element rounded to bf16 (as a double vector for the reference).
Vec bf16_rounded(const Tensor& t) {
  Vec out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = bf16_to_f32(f32_to_bf16(t.f32()[i]));
  return out;
}

TEST(Ops, LinearWithABf16WeightRoundsEveryOperand) {
  const int T = 37, C = 48, OC = 33;
  Tensor x = random_tensor({T, C}, 1), w = random_tensor({OC, C}, 2),
         dy = random_tensor({T, OC}, 3);
  Tensor w16 = Tensor::empty({OC, C}, DType::BF16);
  ops::to_bf16(w16, w);
  Tensor y = Tensor::empty({T, OC}), y32 = Tensor::empty({T, OC});
  ops::linear_forward(y, x, w16);
  ops::linear_forward(y32, x, w);
  // Exact products of bf16 values summed in f32: the double reference on the rounded operands.
  const Vec xr = bf16_rounded(x), wr = bf16_rounded(w), dyr = bf16_rounded(dy);
  EXPECT_LT(rel_rms_error(y, ref::linear(xr, wr, T, C, OC)), 1e-6);
  // And bf16's rounding shows against the f32 GEMM, at bf16's size (2^-8 relative per operand).
  const double vs_f32 = rel_rms_error(y, to_vec(y32));
  EXPECT_GT(vs_f32, 1e-4);
  EXPECT_LT(vs_f32, 2.5e-2);

  Vec dx_ref, dw_ref;
  ref::linear_backward(dyr, xr, wr, T, C, OC, dx_ref, dw_ref);
  Tensor dx = random_tensor({T, C}, 4), dw = random_tensor({OC, C}, 5);
  const Vec dx0 = to_vec(dx), dw0 = to_vec(dw);
  ops::linear_backward(dx, dw, dy, x, w16, /*accumulate_dinp=*/true);
  for (size_t i = 0; i < dx_ref.size(); ++i) dx_ref[i] += dx0[i];
  for (size_t i = 0; i < dw_ref.size(); ++i) dw_ref[i] += dw0[i];
  EXPECT_LT(rel_rms_error(dx, dx_ref), 1e-6);
  EXPECT_LT(rel_rms_error(dw, dw_ref), 1e-6);
  ops::linear_backward(dx, dw, dy, x, w16, /*accumulate_dinp=*/false);
  ref::linear_backward(dyr, xr, wr, T, C, OC, dx_ref, dw_ref);
  EXPECT_LT(rel_rms_error(dx, dx_ref), 1e-6);
}

// The CPU kernels' exponential against exp in double: its relative error grows with |x| (the
// rounding of x log2(e) in f32), 1e-7 near 0 and 4e-6 at the ends of the f32 range; exactly 0
// far below it; NaN in, NaN out (without converting the NaN to an integer, which UBSan reports
// as undefined behaviour).
TEST(FastMath, ExpAccuracyAndSpecials) {
  auto worst = [](double lim) {
    double w = 0.0;
    for (double x = -std::min(lim, 87.0); x <= lim; x += 0.001) {
      const float xf = static_cast<float>(x);
      w = std::max(w, std::abs(cpu::fast_exp(xf) / std::exp(static_cast<double>(xf)) - 1.0));
    }
    return w;
  };
  EXPECT_LT(worst(1.0), 2e-7);
  EXPECT_LT(worst(20.0), 2e-6);
  EXPECT_LT(worst(88.0), 8e-6);
  EXPECT_EQ(cpu::fast_exp(-200.0f), 0.0f);
  EXPECT_EQ(cpu::fast_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(cpu::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(cpu::fast_exp(-std::numeric_limits<float>::quiet_NaN())));
}

TEST(Ops, Matmul) {
  Tensor a = random_tensor({9, 5}, 6), b = random_tensor({7, 5}, 7), c = Tensor::empty({9, 7});
  ops::matmul(c, a, false, b, true);
  EXPECT_LT(rel_rms_error(c, ref::linear(to_vec(a), to_vec(b), 9, 5, 7)), kTol);
}

TEST(Ops, EmbeddingForwardBackward) {
  const int V = 11, C = 70, T = 50;
  auto tok = testing::random_ints(T, 0, V, 8);
  Tensor table = random_tensor({V, C}, 9), y = Tensor::empty({T, C}),
         dy = random_tensor({T, C}, 10);
  ops::embedding_forward(y, int_tensor(tok), table);
  EXPECT_LT(rel_rms_error(y, ref::embedding(tok, to_vec(table), C)), kTol);
  Tensor dt = Tensor::zeros({V, C});
  ops::embedding_backward(dt, int_tensor(tok), dy);
  EXPECT_LT(rel_rms_error(dt, ref::embedding_backward(tok, to_vec(dy), V, C)), kTol);
}

TEST(Ops, RMSNormForwardBackward) {
  const int T = 300, C = 96;  // T spans more than one row block of the dweight reduction
  const float eps = 1e-5f;
  Tensor x = random_tensor({T, C}, 11), w = random_tensor({C}, 12), dy = random_tensor({T, C}, 13);
  Tensor y = Tensor::empty({T, C}), rstd = Tensor::empty({T});
  ops::rmsnorm_forward(y, rstd, x, w, eps);
  EXPECT_LT(rel_rms_error(y, ref::rmsnorm(to_vec(x), to_vec(w), T, C, eps)), kTol);
  Tensor dx = Tensor::zeros({T, C}), dw = Tensor::zeros({C});
  ops::rmsnorm_backward(dx, dw, dy, x, w, rstd);
  Vec dx_ref, dw_ref;
  ref::rmsnorm_backward(to_vec(dy), to_vec(x), to_vec(w), T, C, eps, dx_ref, dw_ref);
  EXPECT_LT(rel_rms_error(dx, dx_ref), kTol);
  EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);
}

// run.precision: bf16's residual stream: RMSNorm reading it gives what the f32 op gives on its
// values (one template; the compiler may vectorise the two sums differently, so to f32
// rounding: 1e-6); add_bf16 rounds the f32 sum, bit for bit.
TEST(Bf16, RmsnormOfABf16StreamAndTheRoundedResidualAdd) {
  const int T = 300, C = 96;
  const Tensor x = random_tensor({T, C}, 21), w = random_tensor({C}, 22),
               dy = random_tensor({T, C}, 23);
  Tensor x16 = Tensor::empty({T, C}, DType::BF16);
  ops::to_bf16(x16, x);
  const Tensor xr = from_vec(bf16_rounded(x), {T, C});
  for (int64_t groups : {1, 4}) {
    SCOPED_TRACE(groups);
    const Shape rs = groups == 1 ? Shape{T} : Shape{T, groups};
    Tensor y16 = Tensor::empty({T, C}), r16 = Tensor::empty(rs), y = Tensor::empty({T, C}),
           r = Tensor::empty(rs);
    ops::rmsnorm_forward(y16, r16, x16, w, 1e-5f, groups);
    ops::rmsnorm_forward(y, r, xr, w, 1e-5f, groups);
    EXPECT_LT(rel_rms_error(y16, to_vec(y)), 1e-6);
    EXPECT_LT(rel_rms_error(r16, to_vec(r)), 1e-6);
    Tensor dx16 = Tensor::zeros({T, C}), dw16 = Tensor::zeros({C}), dx = Tensor::zeros({T, C}),
           dw = Tensor::zeros({C});
    ops::rmsnorm_backward(dx16, dw16, dy, x16, w, r16, groups);
    ops::rmsnorm_backward(dx, dw, dy, xr, w, r, groups);
    EXPECT_LT(rel_rms_error(dx16, to_vec(dx)), 1e-6);
    EXPECT_LT(rel_rms_error(dw16, to_vec(dw)), 1e-6);
  }
  const Tensor a = random_tensor({T, C}, 24);
  Tensor out = Tensor::empty({T, C}, DType::BF16);
  ops::add_bf16(out, a, x16);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(out.bf16()[i], f32_to_bf16(a.f32()[i] + bf16_to_f32(x16.bf16()[i]))) << i;
  ops::add_bf16(x16, a, x16);  // in place, as the model's stream update may be
  EXPECT_EQ(std::memcmp(x16.data(), out.data(), out.nbytes()), 0);
}

TEST(Ops, SiluForwardBackward) {
  Tensor x = random_tensor({1000}, 14, 4.0f), dy = random_tensor({1000}, 15);
  Tensor y = Tensor::empty({1000}), dx = Tensor::empty({1000});
  ops::silu_forward(y, x);
  EXPECT_LT(rel_rms_error(y, ref::silu(to_vec(x))), kTol);
  ops::silu_backward(dx, dy, x);
  EXPECT_LT(rel_rms_error(dx, ref::silu_backward(to_vec(dy), to_vec(x))), kTol);
}

TEST(Ops, SquaredReluForwardBackward) {
  Tensor x = random_tensor({1000}, 14, 2.0f), dy = random_tensor({1000}, 15);
  Tensor y = Tensor::empty({1000}), dx = Tensor::empty({1000});
  Vec want_y(1000), want_dx(1000);
  for (int i = 0; i < 1000; ++i) {
    const double v = x.f32()[i];
    want_y[i] = v > 0 ? v * v : 0.0;
    want_dx[i] = v > 0 ? 2 * v * dy.f32()[i] : 0.0;
  }
  ops::relu2_forward(y, x);
  EXPECT_LT(rel_rms_error(y, want_y), kTol);
  ops::relu2_backward(dx, dy, x);
  EXPECT_LT(rel_rms_error(dx, want_dx), kTol);
}

TEST(Ops, SwiGLUForwardBackward) {
  const int T = 33, F = 40;
  Tensor gu = random_tensor({T, 2 * F}, 16, 3.0f), dy = random_tensor({T, F}, 17);
  Tensor y = Tensor::empty({T, F}), dgu = Tensor::empty({T, 2 * F});
  ops::swiglu_forward(y, gu);
  EXPECT_LT(rel_rms_error(y, ref::swiglu(to_vec(gu), T, F)), kTol);
  ops::swiglu_backward(dgu, dy, gu);
  EXPECT_LT(rel_rms_error(dgu, ref::swiglu_backward(to_vec(dy), to_vec(gu), T, F)), kTol);
}

TEST(Ops, RopeForwardBackwardAtLargePositions) {
  const int T = 6, H = 3, D = 16;
  const float theta = 500000.0f;
  std::vector<int32_t> pos = {0, 1, 77, 4095, 1 << 20, (1 << 20) + 12345};
  Tensor x = random_tensor({T, H, D}, 18), table = Tensor::empty({T, D / 2, 2});
  ops::rope_table(table, int_tensor(pos), RopeFrequencies{.theta = theta});
  Vec x0 = to_vec(x);
  ops::rope_forward(x, table);
  EXPECT_LT(rel_rms_error(x, ref::rope(x0, pos, T, H, D, theta)), kTol);
  Tensor g = random_tensor({T, H, D}, 19);
  Vec g0 = to_vec(g);
  ops::rope_backward(g, table);
  EXPECT_LT(rel_rms_error(g, ref::rope_backward(g0, pos, T, H, D, theta)), kTol);
}

TEST(Ops, LMHeadLossForwardBackward) {
  const int T = 150, C = 24, V = 37;
  auto tg = testing::random_ints(T, 0, V, 20);
  tg[3] = -1;
  tg[77] = -1;
  Tensor h = random_tensor({T, C}, 21), w = random_tensor({V, C}, 22, 0.5f);
  Tensor dh = Tensor::empty({T, C}), dw = random_tensor({V, C}, 23), losses = Tensor::empty({T});
  Vec dw0 = to_vec(dw);
  const float scale = 0.125f;
  double loss = ops::lm_head_loss(h, w, int_tensor(tg), dh, dw, scale, losses);
  double want = ref::lm_head_loss(to_vec(h), to_vec(w), tg, T, C, V);
  EXPECT_NEAR(loss, want, 1e-5 * std::abs(want));
  double sum = 0;
  for (int t = 0; t < T; ++t) sum += losses.f32()[t];
  EXPECT_NEAR(sum, want, 1e-5 * std::abs(want));
  EXPECT_EQ(losses.f32()[3], 0.0f);

  Vec dh_ref, dw_ref;
  ref::lm_head_loss_backward(to_vec(h), to_vec(w), tg, T, C, V, dh_ref, dw_ref);
  for (auto& x : dh_ref) x *= scale;
  for (size_t i = 0; i < dw_ref.size(); ++i) dw_ref[i] = dw_ref[i] * scale + dw0[i];
  EXPECT_LT(rel_rms_error(dh, dh_ref), kTol);
  EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);

  // Forward only gives the same loss.
  EXPECT_EQ(ops::lm_head_loss(h, w, int_tensor(tg), Tensor(), Tensor(), 1.0f), loss);
}

TEST(Ops, LMHeadLossManyBlocks) {
  // V large enough that the token blocking splits T into several blocks.
  const int T = 300, C = 8, V = 20000;
  auto tg = testing::random_ints(T, 0, V, 24);
  Tensor h = random_tensor({T, C}, 25), w = random_tensor({V, C}, 26, 0.3f);
  Tensor dh = Tensor::empty({T, C}), dw = Tensor::zeros({V, C});
  double loss = ops::lm_head_loss(h, w, int_tensor(tg), dh, dw, 1.0f);
  double want = ref::lm_head_loss(to_vec(h), to_vec(w), tg, T, C, V);
  EXPECT_NEAR(loss, want, 1e-5 * std::abs(want));
  Vec dh_ref, dw_ref;
  ref::lm_head_loss_backward(to_vec(h), to_vec(w), tg, T, C, V, dh_ref, dw_ref);
  EXPECT_LT(rel_rms_error(dh, dh_ref), kTol);
  EXPECT_LT(rel_rms_error(dw, dw_ref), kTol);
}

TEST(Ops, AdamWMatchesTheFormula) {
  const int n = 1000;
  Tensor p = random_tensor({n}, 27), g = random_tensor({n}, 28), m = random_tensor({n}, 29, 0.1f);
  Tensor v = Tensor::empty({n});
  for (int i = 0; i < n; ++i) v.f32()[i] = 0.01f * (1 + i % 7);
  Vec p0 = to_vec(p), g0 = to_vec(g), m0 = to_vec(m), v0 = to_vec(v);
  ops::AdamW hp{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7};
  ops::adamw_update(p, g, m, v, hp, /*decay=*/true);
  Vec want(n);
  for (int i = 0; i < n; ++i) {
    double mi = 0.9 * m0[i] + 0.1 * g0[i], vi = 0.95 * v0[i] + 0.05 * g0[i] * g0[i];
    double mh = mi / (1 - std::pow(0.9, 7)), vh = vi / (1 - std::pow(0.95, 7));
    want[i] = p0[i] * (1 - 3e-3 * 0.1) - 3e-3 * mh / (std::sqrt(vh) + 1e-8);
  }
  EXPECT_LT(rel_rms_error(p, want), kTol);
}

TEST(Ops, ReductionsAreDeterministicAndCorrect) {
  Tensor x = random_tensor({300000}, 30);
  double want = 0;
  for (int64_t i = 0; i < x.numel(); ++i) want += double(x.f32()[i]) * x.f32()[i];
  double a = ops::sum_squares(x), b = ops::sum_squares(x);
  EXPECT_EQ(a, b);
  EXPECT_NEAR(a, want, 1e-9 * want);
  EXPECT_TRUE(ops::all_finite(x));
  x.f32()[123456] = std::nanf("");
  EXPECT_FALSE(ops::all_finite(x));
}

TEST(Ops, ShapeMismatchIsAnInternalError) {
  Tensor x = random_tensor({4, 8}, 31), w = random_tensor({5, 7}, 32), y = Tensor::empty({4, 5});
  EXPECT_THROW(ops::linear_forward(y, x, w), InternalError);
}

TEST(Arena, BumpsReleasesAndTracksThePeak) {
  Arena arena;
  Tensor a = arena.alloc({1000});
  auto mark = arena.mark();
  Tensor b = arena.alloc({int64_t(5) << 20});  // bigger than the first block: a second block
  EXPECT_GE(arena.peak(), size_t(4000 + (size_t(5) << 20) * 4));
  arena.release(mark);
  EXPECT_EQ(arena.in_use(), mark.in_use);
  Tensor c = arena.alloc({10});
  EXPECT_EQ(reinterpret_cast<char*>(c.data()) - reinterpret_cast<char*>(a.data()), 4032);
  size_t cap = arena.capacity();
  arena.reset();
  EXPECT_EQ(arena.in_use(), 0u);
  EXPECT_EQ(arena.capacity(), cap);  // consolidated into one block of the same size
  // The next step's allocations are contiguous in that one block.
  Tensor d = arena.alloc({int64_t(5) << 20});
  Tensor e = arena.alloc({1000});
  EXPECT_EQ(reinterpret_cast<char*>(e.data()) - reinterpret_cast<char*>(d.data()),
            (int64_t(5) << 20) * 4);
}

}  // namespace
}  // namespace rt
