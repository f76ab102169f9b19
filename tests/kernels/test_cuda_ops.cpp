// Every CUDA op of kernels/ops.h outside attention and GLR (test_cuda_attention, test_cuda_glr)
// against the CPU op on the same inputs: relative RMS error within kTol on the f32 path, exact
// where both sides sum in the same order. Skips where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <span>

#include "kernels/device.h"
#include "kernels/ops.h"
#include "tests/testing.h"

namespace rt {
namespace {

using testing::int_tensor;
using testing::random_tensor;
using testing::rel_rms_error;
using testing::to_vec;

// f32 on both sides; the GPU's exp and its summation order differ from the CPU's by rounding.
constexpr double kTol = 1e-5;

// A tensor on the CPU and its copy on the GPU; an op runs on both, then they are compared.
struct Twin {
  Tensor cpu, gpu;
  explicit Twin(const Tensor& host) : cpu(host), gpu(to_device(host, Device::CUDA)) {}
  Twin(Shape shape, uint64_t seed, float stddev = 1.0f)
      : Twin(random_tensor(shape, seed, stddev)) {}
  Tensor gpu_on_host() const { return to_device(gpu, Device::CPU); }
  double error() const { return rel_rms_error(gpu_on_host(), to_vec(cpu)); }
  bool identical() const {
    Tensor g = gpu_on_host();
    return std::equal(static_cast<const char*>(g.data()),
                      static_cast<const char*>(g.data()) + g.nbytes(),
                      static_cast<const char*>(cpu.data()));
  }
};
using Side = Tensor Twin::*;

// Runs the op once on the CPU tensors and once on the GPU tensors of the twins it names.
template <class Op>
void on_both(Op op) {
  op(&Twin::cpu);
  op(&Twin::gpu);
}

Twin ints(const std::vector<int32_t>& v) { return Twin(int_tensor(v)); }

#define SKIP_WITHOUT_GPU()      \
  if (cuda_device_count() == 0) \
  GTEST_SKIP() << "no CUDA device (CUDA backend built: " << cuda_compiled() << ")"

TEST(CudaOps, ElementwiseAndReductions) {
  SKIP_WITHOUT_GPU();
  Twin a({1000, 37}, 1), b({1000, 37}, 2), out({1000, 37}, 3);
  on_both([&](Side s) { ops::add(out.*s, a.*s, b.*s); });
  EXPECT_TRUE(out.identical());
  on_both([&](Side s) { ops::accumulate(out.*s, a.*s); });
  on_both([&](Side s) { ops::scale(out.*s, 0.37f); });
  EXPECT_TRUE(out.identical());
  on_both([&](Side s) { ops::fill(b.*s, -2.5f); });
  EXPECT_TRUE(b.identical());
  // A double sum over a different blocking: equal to ~1e-15, not bit for bit.
  const double want = ops::sum_squares(a.cpu), got = ops::sum_squares(a.gpu);
  EXPECT_NEAR(got, want, 1e-12 * want);
  EXPECT_EQ(ops::sum_squares(a.gpu), got);  // the same bits every call
  EXPECT_TRUE(ops::all_finite(a.gpu));
  a.cpu.f32()[12345] = std::numeric_limits<float>::quiet_NaN();
  copy_tensor(a.gpu, a.cpu);
  EXPECT_FALSE(ops::all_finite(a.gpu));
}

TEST(CudaOps, MatmulEveryTransposeWithBeta) {
  SKIP_WITHOUT_GPU();
  const int M = 67, N = 45, K = 129;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Twin a(ta ? Shape{K, M} : Shape{M, K}, 10), b(tb ? Shape{N, K} : Shape{K, N}, 11);
      Twin c({M, N}, 12);
      on_both([&](Side s) { ops::matmul(c.*s, a.*s, ta, b.*s, tb, 0.5f, 0.75f); });
      EXPECT_LT(c.error(), kTol) << "trans_a " << ta << " trans_b " << tb;
    }
}

TEST(CudaOps, LinearForwardBackward) {
  SKIP_WITHOUT_GPU();
  Twin x({300, 96}, 20), w({80, 96}, 21, 0.1f), y({300, 80}, 22), dy({300, 80}, 23);
  Twin dx({300, 96}, 24), dw({80, 96}, 25);
  on_both([&](Side s) { ops::linear_forward(y.*s, x.*s, w.*s); });
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) { ops::linear_backward(dx.*s, dw.*s, dy.*s, x.*s, w.*s, true); });
  EXPECT_LT(dx.error(), kTol);
  EXPECT_LT(dw.error(), kTol);
  on_both([&](Side s) { ops::linear_backward(dx.*s, dw.*s, dy.*s, x.*s, w.*s, false); });
  EXPECT_LT(dx.error(), kTol);
}

// run.precision: bf16: the rounding gives the CPU's bits; the GEMMs multiply the same bf16 values
// exactly and sum in f32 (tensor cores), so they agree with the CPU's bf16 GEMM to f32 rounding.
TEST(CudaOps, Bf16RoundingAndLinearWithABf16Weight) {
  SKIP_WITHOUT_GPU();
  Tensor host = random_tensor({1000, 37}, 60);
  const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x7f7fffffu,
                               0x7f800000u, 0x7fc00000u, 0x00000001u};
  for (size_t i = 0; i < std::size(specials); ++i) std::memcpy(host.f32() + i, &specials[i], 4);
  Twin x(host), x16(Tensor::zeros({1000, 37}, DType::BF16));
  on_both([&](Side s) { ops::to_bf16(x16.*s, x.*s); });
  EXPECT_TRUE(x16.identical());

  for (const int C : {96, 45}) {  // 45: leading dimensions that are not multiples of 8
    SCOPED_TRACE(C);
    const Tensor w32 = random_tensor({80, C}, 61, 0.1f);
    Tensor w16_host = Tensor::empty({80, C}, DType::BF16);
    ops::to_bf16(w16_host, w32);
    Twin inp({300, C}, 62), w16(w16_host), y({300, 80}, 63), dy({300, 80}, 64);
    Twin dx({300, C}, 65), dw({80, C}, 66);
    on_both([&](Side s) { ops::linear_forward(y.*s, inp.*s, w16.*s); });
    EXPECT_LT(y.error(), kTol);
    on_both([&](Side s) { ops::linear_backward(dx.*s, dw.*s, dy.*s, inp.*s, w16.*s, true); });
    EXPECT_LT(dx.error(), kTol);
    EXPECT_LT(dw.error(), kTol);
  }
}

// The bf16 residual stream: RMSNorm reading it and the rounded residual add, against the CPU.
TEST(CudaOps, RMSNormOfABf16StreamAndTheRoundedResidualAdd) {
  SKIP_WITHOUT_GPU();
  const int T = 700, C = 96;
  Tensor x32 = random_tensor({T, C}, 80), x16_host = Tensor::empty({T, C}, DType::BF16);
  ops::to_bf16(x16_host, x32);
  for (int64_t groups : {1, 4}) {
    SCOPED_TRACE(groups);
    Twin x16(x16_host), w({C}, 81), y({T, C}, 82), dy({T, C}, 83), dx({T, C}, 84), dw({C}, 85);
    Twin rstd(groups == 1 ? Shape{T} : Shape{T, groups}, 86);
    on_both([&](Side s) { ops::rmsnorm_forward(y.*s, rstd.*s, x16.*s, w.*s, 1e-5f, groups); });
    EXPECT_LT(y.error(), kTol);
    EXPECT_LT(rstd.error(), kTol);
    on_both(
        [&](Side s) { ops::rmsnorm_backward(dx.*s, dw.*s, dy.*s, x16.*s, w.*s, rstd.*s, groups); });
    EXPECT_LT(dx.error(), kTol);
    EXPECT_LT(dw.error(), kTol);
  }
  Twin a({T, C}, 87), b(x16_host), out(Tensor::zeros({T, C}, DType::BF16));
  on_both([&](Side s) { ops::add_bf16(out.*s, a.*s, b.*s); });
  EXPECT_TRUE(out.identical());
}

TEST(CudaOps, EmbeddingForwardBackwardSumInTokenOrder) {
  SKIP_WITHOUT_GPU();
  std::vector<int32_t> tok = testing::random_ints(500, 0, 20, 30);  // many repeats
  Twin tokens = ints(tok), table({20, 48}, 31), y({500, 48}, 32), dy({500, 48}, 33);
  Twin dtable({20, 48}, 34);
  on_both([&](Side s) { ops::embedding_forward(y.*s, tokens.*s, table.*s); });
  EXPECT_TRUE(y.identical());
  on_both([&](Side s) { ops::embedding_backward(dtable.*s, tokens.*s, dy.*s); });
  EXPECT_TRUE(dtable.identical());
}

TEST(CudaOps, RMSNormOneAndSeveralGroups) {
  SKIP_WITHOUT_GPU();
  for (int64_t groups : {1, 4}) {
    const int T = 700, C = 96;
    Twin x({T, C}, 40), w({C}, 41), y({T, C}, 42), dy({T, C}, 44);
    Twin rstd(groups == 1 ? Shape{T} : Shape{T, groups}, 43);
    Twin dx({T, C}, 45), dw({C}, 46);
    on_both([&](Side s) { ops::rmsnorm_forward(y.*s, rstd.*s, x.*s, w.*s, 1e-5f, groups); });
    EXPECT_LT(y.error(), kTol);
    EXPECT_LT(rstd.error(), kTol);
    on_both(
        [&](Side s) { ops::rmsnorm_backward(dx.*s, dw.*s, dy.*s, x.*s, w.*s, rstd.*s, groups); });
    EXPECT_LT(dx.error(), kTol) << groups;
    EXPECT_LT(dw.error(), kTol) << groups;
  }
}

TEST(CudaOps, Activations) {
  SKIP_WITHOUT_GPU();
  const int T = 257, F = 72;
  Twin x({T, F}, 50, 3.0f), y({T, F}, 51), dy({T, F}, 52), dx({T, F}, 53);
  on_both([&](Side s) { ops::silu_forward(y.*s, x.*s); });
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) { ops::silu_backward(dx.*s, dy.*s, x.*s); });
  EXPECT_LT(dx.error(), kTol);
  on_both([&](Side s) { ops::relu2_forward(y.*s, x.*s); });
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) { ops::relu2_backward(dx.*s, dy.*s, x.*s); });
  EXPECT_LT(dx.error(), kTol);

  Twin gu({T, 2 * F}, 54, 3.0f), dgu({T, 2 * F}, 55);
  on_both([&](Side s) { ops::swiglu_forward(y.*s, gu.*s); });
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) { ops::swiglu_backward(dgu.*s, dy.*s, gu.*s); });
  EXPECT_LT(dgu.error(), kTol);

  Twin gate({T, F}, 56, 3.0f), da({T, F}, 57), dgate({T, F}, 58);
  on_both([&](Side s) { ops::silu_gate_forward(y.*s, x.*s, gate.*s); });
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) { ops::silu_gate_backward(da.*s, dgate.*s, dy.*s, x.*s, gate.*s); });
  EXPECT_LT(da.error(), kTol);
  EXPECT_LT(dgate.error(), kTol);

  Twin bias({F}, 59), dbias({F}, 60);
  on_both([&](Side s) { ops::logsigmoid_forward(y.*s, x.*s, bias.*s, 1.0f / 16); });
  EXPECT_LT(y.error(), kTol);
  on_both(
      [&](Side s) { ops::logsigmoid_backward(dx.*s, dbias.*s, dy.*s, x.*s, bias.*s, 1.0f / 16); });
  EXPECT_LT(dx.error(), kTol);
  EXPECT_LT(dbias.error(), kTol);
}

TEST(CudaOps, CausalConvWithAndWithoutHalo) {
  SKIP_WITHOUT_GPU();
  const int T = 300, C = 40, W = 4;
  for (bool with_halo : {false, true}) {
    Twin x({T, C}, 70), w({C, W}, 71), b({C}, 72), y({T, C}, 73), dy({T, C}, 74);
    Twin dx({T, C}, 75), dw({C, W}, 76), db({C}, 77), halo({W - 1, C}, 78), dhalo({W - 1, C}, 79);
    auto maybe = [&](Twin& t, Side s) { return with_halo ? t.*s : Tensor(); };
    on_both([&](Side s) { ops::conv1d_causal_forward(y.*s, x.*s, w.*s, b.*s, maybe(halo, s)); });
    EXPECT_LT(y.error(), kTol);
    on_both([&](Side s) {
      ops::conv1d_causal_backward(dx.*s, dw.*s, db.*s, maybe(dhalo, s), dy.*s, x.*s, w.*s,
                                  maybe(halo, s));
    });
    EXPECT_LT(dx.error(), kTol);
    EXPECT_LT(dw.error(), kTol);
    EXPECT_LT(db.error(), kTol);
    if (with_halo) {
      EXPECT_LT(dhalo.error(), kTol);
    }
  }
}

TEST(CudaOps, MambaPieces) {
  SKIP_WITHOUT_GPU();
  const int T = 520, H = 6, P = 16;
  Twin raw({T, H}, 80), bias({H}, 81), a_log({H}, 82, 0.5f), dt({T, H}, 83), g({T, H}, 84);
  on_both([&](Side s) { ops::mamba_dt_forward(dt.*s, g.*s, raw.*s, bias.*s, a_log.*s); });
  EXPECT_LT(dt.error(), kTol);
  EXPECT_LT(g.error(), kTol);
  Twin ddt({T, H}, 85), dg({T, H}, 86), draw({T, H}, 87), dbias({H}, 88), dalog({H}, 89);
  on_both([&](Side s) {
    ops::mamba_dt_backward(draw.*s, dbias.*s, dalog.*s, ddt.*s, dg.*s, raw.*s, bias.*s, a_log.*s);
  });
  EXPECT_LT(draw.error(), kTol);
  EXPECT_LT(dbias.error(), kTol);
  EXPECT_LT(dalog.error(), kTol);

  Twin x({T, H, P}, 90), sc({T, H}, 91), o({T, H, P}, 92), d({H}, 93), v({T, H, P}, 94);
  Twin y({T, H, P}, 95), dy({T, H, P}, 96), dx({T, H, P}, 97), ds({T, H}, 98), dd({H}, 99);
  on_both([&](Side s) {
    ops::scale_heads_forward(v.*s, x.*s, sc.*s);
    ops::skip_heads_forward(y.*s, o.*s, x.*s, d.*s);
  });
  EXPECT_TRUE(v.identical());
  EXPECT_LT(y.error(), kTol);
  on_both([&](Side s) {
    ops::scale_heads_backward(dx.*s, ds.*s, dy.*s, x.*s, sc.*s);
    ops::skip_heads_backward(dx.*s, dd.*s, dy.*s, x.*s, d.*s);
  });
  EXPECT_LT(dx.error(), kTol);
  EXPECT_LT(ds.error(), kTol);
  EXPECT_LT(dd.error(), kTol);
}

TEST(CudaOps, RopeAtLargePositions) {
  SKIP_WITHOUT_GPU();
  const int T = 64, H = 3, D = 32;
  std::vector<int32_t> pos(T);
  for (int t = 0; t < T; ++t) pos[t] = (1 << 20) - 3 * t;
  Twin positions = ints(pos), table({T, D / 2, 2}, 100), x({T, H, D}, 101);
  for (const RopeKind kind : {RopeKind::Default, RopeKind::Yarn, RopeKind::Llama3}) {
    const RopeFrequencies freq{.kind = kind, .factor = 8, .original_context = 4096};
    on_both([&](Side s) { ops::rope_table(table.*s, positions.*s, freq); });
    EXPECT_LT(table.error(), 1e-6) << static_cast<int>(kind);  // double, rounded once to f32
  }
  on_both([&](Side s) { ops::rope_forward(x.*s, table.*s); });
  EXPECT_LT(x.error(), kTol);
  on_both([&](Side s) { ops::rope_backward(x.*s, table.*s); });
  EXPECT_LT(x.error(), kTol);
}

TEST(CudaOps, LMHeadLossAndArgmaxOverSeveralBlocks) {
  SKIP_WITHOUT_GPU();
  // V = 4096 gives 4096 rows per GPU block: T = 5000 takes two, the second partial.
  const int T = 5000, C = 32, V = 4096;
  std::vector<int32_t> tg = testing::random_ints(T, 0, V, 110);
  tg[7] = -1;
  tg[4500] = -1;
  Twin targets = ints(tg), h({T, C}, 111), w({V, C}, 112, 0.5f);
  Twin dh({T, C}, 113), dw({V, C}, 114), losses({T}, 115);
  double loss[2];
  int side = 0;
  on_both([&](Side s) {
    loss[side++] = ops::lm_head_loss(h.*s, w.*s, targets.*s, dh.*s, dw.*s, 0.125f, losses.*s);
  });
  EXPECT_NEAR(loss[1], loss[0], 1e-5 * std::abs(loss[0]));
  EXPECT_LT(losses.error(), kTol);
  EXPECT_LT(dh.error(), kTol);
  EXPECT_LT(dw.error(), kTol);
  EXPECT_EQ(losses.gpu_on_host().f32()[7], 0.0f);
  EXPECT_EQ(ops::lm_head_loss(h.gpu, w.gpu, targets.gpu, Tensor(), Tensor(), 1.0f), loss[1]);

  Twin argmax = ints(std::vector<int32_t>(T, -1));
  on_both([&](Side s) { ops::lm_head_argmax(argmax.*s, h.*s, w.*s); });
  Tensor got = argmax.gpu_on_host();
  int differ = 0;  // a near tie may round the other way; a systematic fault differs everywhere
  for (int t = 0; t < T; ++t) differ += got.i32()[t] != argmax.cpu.i32()[t];
  EXPECT_LE(differ, T / 1000);
}

TEST(CudaOps, AdamWMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  const int n = 10007;
  Twin p({n}, 120), g({n}, 121), m({n}, 122, 0.1f), v({n}, 123, 0.1f);
  for (float& x : std::span(v.cpu.f32(), n)) x = std::abs(x);
  copy_tensor(v.gpu, v.cpu);
  const ops::AdamW hp{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7};
  for (bool decay : {true, false}) {
    on_both([&](Side s) { ops::adamw_update(p.*s, g.*s, m.*s, v.*s, hp, decay); });
    EXPECT_LT(p.error(), 1e-6);
    EXPECT_LT(m.error(), 1e-6);
    EXPECT_LT(v.error(), 1e-6);
  }
}

}  // namespace
}  // namespace rt
