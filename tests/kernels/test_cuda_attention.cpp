// The CUDA attention kernels agree with the CPU ones (kernels/cpu/attention.cpp): forward
// (out, lse), merge, delta and the accumulating backward, for GQA and MQA, head dims from odd
// to the maximum 256, Tq != Tk, lengths that are not multiples of any tile, causal diagonal
// blocks, causal blocks at offsets where some (or all) queries see no key, and the full mask.
// The -inf lse entries must match exactly. Skips where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/device.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::random_tensor;
using testing::rel_rms_error;
using testing::to_vec;

constexpr double kTol = 1e-5;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Copies between the devices: to_device (kernels/tensor.h).
Tensor to_cuda(const Tensor& t) { return to_device(t, Device::CUDA); }
Tensor to_host(const Tensor& t) { return to_device(t, Device::CPU); }

// A host copy of a host tensor (the CPU op may then write into it).
Tensor clone(const Tensor& host) {
  Tensor t = Tensor::empty(host.shape());
  copy_tensor(t, host);
  return t;
}

// got (on the GPU) and want (on the CPU) have -inf at the same places, and the finite entries
// agree to kTol.
void expect_lse_matches(const Tensor& got_dev, const Tensor& want, const char* what) {
  const Vec g = to_vec(to_host(got_dev)), w = to_vec(want);
  ASSERT_EQ(g.size(), w.size());
  Vec gf, wf;
  int mismatched_inf = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isinf(g[i]) || std::isinf(w[i])) {
      if (g[i] != w[i] && mismatched_inf++ < 5)
        ADD_FAILURE() << what << "[" << i << "]: got " << g[i] << ", want " << w[i];
    } else {
      gf.push_back(g[i]);
      wf.push_back(w[i]);
    }
  }
  EXPECT_EQ(mismatched_inf, 0) << what;
  if (!wf.empty()) {
    EXPECT_LT(rel_rms_error(gf, wf), kTol) << what;
  }
}

void expect_close(const Tensor& got_dev, const Tensor& want, const char* what) {
  EXPECT_LT(rel_rms_error(to_host(got_dev), to_vec(want)), kTol) << what;
}

struct Case {
  int Tq, Tk, H, Hkv, D;
  int64_t q_pos0, k_pos0;
  bool causal;
};

// One block, forward, delta and backward, on both devices from the same inputs. Each op gets
// the CPU's inputs (not the GPU's previous outputs) so that a failure names its op.
void check_block(const Case& c, uint64_t seed) {
  const ops::Mask mask = c.causal ? ops::Mask::Causal : ops::Mask::Full;
  const Tensor q = random_tensor({c.Tq, c.H, c.D}, seed),
               k = random_tensor({c.Tk, c.Hkv, c.D}, seed + 1),
               v = random_tensor({c.Tk, c.Hkv, c.D}, seed + 2),
               dout = random_tensor({c.Tq, c.H, c.D}, seed + 3);
  const Tensor q_d = to_cuda(q), k_d = to_cuda(k), v_d = to_cuda(v), dout_d = to_cuda(dout);

  // Forward; the GPU outputs start as garbage to check that they are overwritten.
  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({c.Tq, c.H});
  ops::attention_block_forward(out, lse, q, k, v, c.q_pos0, c.k_pos0, mask);
  Tensor out_d = to_cuda(random_tensor(q.shape(), seed + 4)),
         lse_d = to_cuda(random_tensor({c.Tq, c.H}, seed + 5));
  ops::attention_block_forward(out_d, lse_d, q_d, k_d, v_d, c.q_pos0, c.k_pos0, mask);
  expect_close(out_d, out, "out");
  expect_lse_matches(lse_d, lse, "lse");
  {
    // A query that sees no key has out = 0 exactly.
    const Tensor got_out = to_host(out_d);
    const float* l = lse.f32();
    int nonzero = 0;
    for (int64_t i = 0; i < int64_t(c.Tq) * c.H; ++i)
      if (l[i] == kNegInf)
        for (int d = 0; d < c.D; ++d) nonzero += got_out.f32()[i * c.D + d] != 0.0f;
    EXPECT_EQ(nonzero, 0) << "out of queries with no key";
  }

  // Delta from the CPU's out.
  Tensor delta = Tensor::empty({c.Tq, c.H});
  ops::attention_backward_delta(delta, dout, out);
  Tensor delta_d = to_cuda(random_tensor({c.Tq, c.H}, seed + 6));
  ops::attention_backward_delta(delta_d, dout_d, to_cuda(out));
  expect_close(delta_d, delta, "delta");

  // Backward from the CPU's lse and delta, into gradients that already hold values (+=).
  const Tensor dq0 = random_tensor(q.shape(), seed + 7), dk0 = random_tensor(k.shape(), seed + 8),
               dv0 = random_tensor(v.shape(), seed + 9);
  Tensor dq = clone(dq0), dk = clone(dk0), dv = clone(dv0);
  ops::attention_block_backward(dq, dk, dv, q, k, v, dout, lse, delta, c.q_pos0, c.k_pos0, mask);
  Tensor dq_d = to_cuda(dq0), dk_d = to_cuda(dk0), dv_d = to_cuda(dv0);
  ops::attention_block_backward(dq_d, dk_d, dv_d, q_d, k_d, v_d, dout_d, to_cuda(lse),
                                to_cuda(delta), c.q_pos0, c.k_pos0, mask);
  expect_close(dq_d, dq, "dq");
  expect_close(dk_d, dk, "dk");
  expect_close(dv_d, dv, "dv");

  // The increments alone, where the pre-filled values could hide an error in a small term.
  auto increment = [](const Tensor& after, const Tensor& before) {
    Vec a = to_vec(after);
    const Vec b = to_vec(before);
    for (size_t i = 0; i < a.size(); ++i) a[i] -= b[i];
    return a;
  };
  auto increment_matches = [&](const Tensor& got_dev, const Tensor& want, const Tensor& before,
                               const char* what) {
    const Vec g = increment(to_host(got_dev), before), w = increment(want, before);
    double want_norm = 0;
    for (double x : w) want_norm += x * x;
    // A block that no query sees adds exactly nothing, on both devices.
    if (want_norm == 0) {
      for (double x : g) ASSERT_EQ(x, 0.0) << what << " changed although nothing is visible";
    } else {
      // The increment is a difference of f32 values near the pre-filled ones: allow their
      // rounding relative to the (smaller) increment.
      EXPECT_LT(rel_rms_error(g, w), 1e-4) << what << " increment";
    }
  };
  increment_matches(dq_d, dq, dq0, "dq");
  increment_matches(dk_d, dk, dk0, "dk");
  increment_matches(dv_d, dv, dv0, "dv");
}

TEST(CudaAttention, CausalDiagonalGQA) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({77, 77, 4, 2, 24, 0, 0, true}, 1);
}
TEST(CudaAttention, CausalDiagonalAtAnOffset) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({130, 130, 4, 2, 64, 500, 500, true}, 2);
}
TEST(CudaAttention, CausalManyTiles) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({300, 300, 4, 2, 64, 0, 0, true}, 3);
}
TEST(CudaAttention, FullMaskTqNotTk) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({50, 97, 4, 2, 8, 0, 0, false}, 4);
}
TEST(CudaAttention, FullMaskLongerQueries) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({133, 41, 4, 2, 24, 0, 0, false}, 5);
}
TEST(CudaAttention, KeysPartlyInTheFuture) {
  // Queries at 50..149 against keys at 100..249: the first 50 queries see no key at all.
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({100, 150, 4, 2, 24, 50, 100, true}, 6);
}
TEST(CudaAttention, KeysPartlyInThePast) {
  // Queries at 200..244 against keys at 150..219: every query sees some key, some see all.
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({45, 70, 4, 2, 64, 200, 150, true}, 7);
}
TEST(CudaAttention, NoQuerySeesAnyKey) {
  // Every key after every query: lse all -inf, out 0, gradients unchanged.
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({40, 33, 4, 2, 8, 0, 40, true}, 8);
}
TEST(CudaAttention, OddHeadDimMultiQuery) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({61, 90, 4, 1, 13, 30, 0, true}, 9);
}
TEST(CudaAttention, HeadDim128) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({70, 100, 4, 2, 128, 30, 0, true}, 10);
}
TEST(CudaAttention, HeadDim256) {
  // The largest head dim: the most registers and shared memory (above the 48 KB default).
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  check_block({70, 65, 2, 1, 256, 0, 0, false}, 11);
  check_block({65, 65, 2, 1, 256, 0, 0, true}, 12);
}

// Merge with -inf entries on either side (and both), from random running and block results.
TEST(CudaAttention, MergeMatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int T = 37, H = 4, D = 24;
  Tensor out = random_tensor({T, H, D}, 40), lse = random_tensor({T, H}, 41, 3.0f),
         out_blk = random_tensor({T, H, D}, 42), lse_blk = random_tensor({T, H}, 43, 3.0f);
  for (int i = 0; i < T * H; ++i) {
    if (i % 5 == 0) lse.f32()[i] = kNegInf;      // the running result has no key yet
    if (i % 7 == 0) lse_blk.f32()[i] = kNegInf;  // the block has no key for this query
  }
  Tensor out_d = to_cuda(out), lse_d = to_cuda(lse);
  ops::attention_merge(out, lse, out_blk, lse_blk);
  ops::attention_merge(out_d, lse_d, to_cuda(out_blk), to_cuda(lse_blk));
  expect_close(out_d, out, "merged out");
  expect_lse_matches(lse_d, lse, "merged lse");
}

// A causal sequence cut into unequal chunks (as ranks hold them): every visible (Q chunk, KV
// chunk) block is computed and merged, then backward per block with the global lse and delta;
// the same op sequence on both devices.
TEST(CudaAttention, ChunkedSequenceMatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int L = 211, H = 4, Hkv = 2, D = 24;
  const std::vector<int> cuts = {0, 50, 51, 130, L};
  const Tensor q = random_tensor({L, H, D}, 50), k = random_tensor({L, Hkv, D}, 51),
               v = random_tensor({L, Hkv, D}, 52), dout = random_tensor({L, H, D}, 53);

  struct State {
    Tensor q, k, v, dout, out, lse, delta, dq, dk, dv;
  };
  auto make_state = [&](bool cuda) {
    auto on = [cuda](const Tensor& t) { return cuda ? to_cuda(t) : clone(t); };
    Tensor lse0 = Tensor::empty({L, H});
    for (int i = 0; i < L * H; ++i) lse0.f32()[i] = kNegInf;
    return State{on(q),
                 on(k),
                 on(v),
                 on(dout),
                 on(Tensor::zeros({L, H, D})),
                 on(lse0),
                 on(Tensor::zeros({L, H})),
                 on(Tensor::zeros(q.shape())),
                 on(Tensor::zeros(k.shape())),
                 on(Tensor::zeros(v.shape()))};
  };
  auto run = [&](State& s, Device device) {
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) ops::attention_backward_delta(s.delta, s.dout, s.out);
      for (size_t a = 0; a + 1 < cuts.size(); ++a) {
        const int q0 = cuts[a], ql = cuts[a + 1] - cuts[a];
        for (size_t b = 0; b + 1 < cuts.size(); ++b) {
          const int k0 = cuts[b], kl = cuts[b + 1] - cuts[b];
          const ops::BlockKind kind = ops::classify_block(q0, ql, k0, kl);
          if (kind == ops::BlockKind::Skip) continue;
          const ops::Mask mask = kind == ops::BlockKind::Full ? ops::Mask::Full : ops::Mask::Causal;
          if (pass == 0) {
            Tensor ob = Tensor::empty({ql, H, D}, DType::F32, device),
                   lb = Tensor::empty({ql, H}, DType::F32, device);
            ops::attention_block_forward(ob, lb, s.q.rows(q0, ql), s.k.rows(k0, kl),
                                         s.v.rows(k0, kl), q0, k0, mask);
            ops::attention_merge(s.out.rows(q0, ql), s.lse.rows(q0, ql), ob, lb);
          } else {
            ops::attention_block_backward(s.dq.rows(q0, ql), s.dk.rows(k0, kl), s.dv.rows(k0, kl),
                                          s.q.rows(q0, ql), s.k.rows(k0, kl), s.v.rows(k0, kl),
                                          s.dout.rows(q0, ql), s.lse.rows(q0, ql),
                                          s.delta.rows(q0, ql), q0, k0, mask);
          }
        }
      }
    }
  };
  State cpu = make_state(false), gpu = make_state(true);
  run(cpu, Device::CPU);
  run(gpu, Device::CUDA);
  expect_close(gpu.out, cpu.out, "out");
  expect_lse_matches(gpu.lse, cpu.lse, "lse");
  expect_close(gpu.delta, cpu.delta, "delta");
  expect_close(gpu.dq, cpu.dq, "dq");
  expect_close(gpu.dk, cpu.dk, "dk");
  expect_close(gpu.dv, cpu.dv, "dv");
}

// No atomics: the same inputs give the same bits.
TEST(CudaAttention, BackwardIsDeterministic) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int T = 150, H = 4, Hkv = 2, D = 64;
  const Tensor q = to_cuda(random_tensor({T, H, D}, 60)),
               k = to_cuda(random_tensor({T, Hkv, D}, 61)),
               v = to_cuda(random_tensor({T, Hkv, D}, 62)),
               dout = to_cuda(random_tensor({T, H, D}, 63));
  Tensor out = Tensor::empty({T, H, D}, DType::F32, Device::CUDA),
         lse = Tensor::empty({T, H}, DType::F32, Device::CUDA),
         delta = Tensor::empty({T, H}, DType::F32, Device::CUDA);
  ops::attention_block_forward(out, lse, q, k, v, 0, 0, ops::Mask::Causal);
  ops::attention_backward_delta(delta, dout, out);
  std::vector<Tensor> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dq = to_cuda(Tensor::zeros({T, H, D})), dk = to_cuda(Tensor::zeros({T, Hkv, D})),
           dv = to_cuda(Tensor::zeros({T, Hkv, D}));
    ops::attention_block_backward(dq, dk, dv, q, k, v, dout, lse, delta, 0, 0, ops::Mask::Causal);
    std::vector<Tensor> got = {to_host(dq), to_host(dk), to_host(dv)};
    if (run == 0) {
      first = got;
      continue;
    }
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(std::memcmp(got[i].f32(), first[i].f32(), got[i].nbytes()), 0) << "gradient " << i;
  }
}

}  // namespace
}  // namespace rt
