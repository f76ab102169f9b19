// Blockwise attention equals naive softmax attention: values, LSE and all gradients, for
// causal and full masks, GQA, lengths that are not multiples of the tile, several tile sizes,
// and sequences cut into chunks that are merged (what the ring does across ranks).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_ops.h"
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

struct Case {
  int Tq, Tk, H, Hkv, D;
  int64_t q_pos0, k_pos0;
  bool causal;
  int64_t tile_q, tile_k;
};

class TileScope {
 public:
  TileScope(int64_t q, int64_t k) : saved_(cpu::attention_tiles()) {
    cpu::attention_tiles() = {q, k};
  }
  ~TileScope() { cpu::attention_tiles() = saved_; }

 private:
  cpu::AttentionTiles saved_;
};

// Replaces -inf by a large negative number so that rel_rms_error can compare LSEs.
Vec finite(Vec v) {
  for (auto& x : v)
    if (std::isinf(x)) x = -1e30;
  return v;
}

void check_block(const Case& c, uint64_t seed) {
  TileScope tiles(c.tile_q, c.tile_k);
  Tensor q = random_tensor({c.Tq, c.H, c.D}, seed), k = random_tensor({c.Tk, c.Hkv, c.D}, seed + 1),
         v = random_tensor({c.Tk, c.Hkv, c.D}, seed + 2),
         dout = random_tensor({c.Tq, c.H, c.D}, seed + 3);
  ref::AttentionShape s{c.Tq, c.Tk, c.H, c.Hkv, c.D, c.q_pos0, c.k_pos0, c.causal};
  ops::Mask mask = c.causal ? ops::Mask::Causal : ops::Mask::Full;

  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({c.Tq, c.H});
  ops::attention_block_forward(out, lse, q, k, v, c.q_pos0, c.k_pos0, mask);
  Vec out_ref, lse_ref;
  ref::attention(to_vec(q), to_vec(k), to_vec(v), s, out_ref, lse_ref);
  EXPECT_LT(rel_rms_error(out, out_ref), kTol);
  EXPECT_LT(rel_rms_error(finite(to_vec(lse)), finite(lse_ref)), kTol);

  Tensor delta = Tensor::empty({c.Tq, c.H});
  ops::attention_backward_delta(delta, dout, out);
  Tensor dq = Tensor::zeros(q.shape()), dk = Tensor::zeros(k.shape()),
         dv = Tensor::zeros(v.shape());
  ops::attention_block_backward(dq, dk, dv, q, k, v, dout, lse, delta, c.q_pos0, c.k_pos0, mask);
  Vec dq_ref, dk_ref, dv_ref;
  ref::attention_backward(to_vec(dout), to_vec(q), to_vec(k), to_vec(v), s, dq_ref, dk_ref, dv_ref);
  EXPECT_LT(rel_rms_error(dq, dq_ref), kTol);
  EXPECT_LT(rel_rms_error(dk, dk_ref), kTol);
  EXPECT_LT(rel_rms_error(dv, dv_ref), kTol);
}

TEST(AttentionBlock, CausalSquare) { check_block({256, 256, 2, 2, 32, 0, 0, true, 128, 128}, 1); }
TEST(AttentionBlock, FullMask) { check_block({100, 157, 2, 2, 16, 0, 0, false, 32, 64}, 2); }
TEST(AttentionBlock, GQA) { check_block({130, 130, 6, 2, 16, 0, 0, true, 64, 32}, 3); }
TEST(AttentionBlock, GQAMultiQueryFull) { check_block({70, 90, 4, 1, 8, 0, 0, false, 16, 16}, 4); }
TEST(AttentionBlock, LengthsNotMultiplesOfTheTile) {
  check_block({201, 333, 4, 2, 16, 132, 0, true, 64, 64}, 5);
}
TEST(AttentionBlock, OddTileSizes) { check_block({199, 199, 2, 1, 24, 0, 0, true, 40, 24}, 6); }
TEST(AttentionBlock, TinyTiles) { check_block({77, 77, 2, 2, 8, 0, 0, true, 16, 16}, 7); }
TEST(AttentionBlock, LargeTiles) { check_block({300, 300, 2, 2, 64, 0, 0, true, 256, 256}, 8); }
TEST(AttentionBlock, KeysPartlyInTheFuture) {
  // Queries at 50..149 against keys at 100..249: the first 50 queries see no key at all.
  check_block({100, 150, 2, 2, 16, 50, 100, true, 32, 32}, 9);
}

// A sequence cut into chunks (as ranks hold them): every (Q chunk, KV chunk) block is classified
// by positions, computed, merged; backward per block with the global LSE and delta.
void check_chunked(int L, std::vector<int> cuts, int H, int Hkv, int D, uint64_t seed) {
  Tensor q = random_tensor({L, H, D}, seed), k = random_tensor({L, Hkv, D}, seed + 1),
         v = random_tensor({L, Hkv, D}, seed + 2), dout = random_tensor({L, H, D}, seed + 3);
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(L);
  Tensor out = Tensor::empty({L, H, D}), lse = Tensor::empty({L, H});
  ops::fill(lse, -std::numeric_limits<float>::infinity());
  ops::fill(out, 0.0f);
  Tensor dq = Tensor::zeros(q.shape()), dk = Tensor::zeros(k.shape()),
         dv = Tensor::zeros(v.shape());
  Tensor delta = Tensor::empty({L, H});
  int blocks_run = 0;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) ops::attention_backward_delta(delta, dout, out);
    for (size_t a = 0; a + 1 < cuts.size(); ++a) {
      const int q0 = cuts[a], ql = cuts[a + 1] - cuts[a];
      for (size_t b = 0; b + 1 < cuts.size(); ++b) {
        const int k0 = cuts[b], kl = cuts[b + 1] - cuts[b];
        ops::BlockKind kind = ops::classify_block(q0, ql, k0, kl);
        if (kind == ops::BlockKind::Skip) continue;
        ops::Mask mask = kind == ops::BlockKind::Full ? ops::Mask::Full : ops::Mask::Causal;
        if (pass == 0) {
          ++blocks_run;
          Tensor ob = Tensor::empty({ql, H, D}), lb = Tensor::empty({ql, H});
          ops::attention_block_forward(ob, lb, q.rows(q0, ql), k.rows(k0, kl), v.rows(k0, kl), q0,
                                       k0, mask);
          ops::attention_merge(out.rows(q0, ql), lse.rows(q0, ql), ob, lb);
        } else {
          ops::attention_block_backward(dq.rows(q0, ql), dk.rows(k0, kl), dv.rows(k0, kl),
                                        q.rows(q0, ql), k.rows(k0, kl), v.rows(k0, kl),
                                        dout.rows(q0, ql), lse.rows(q0, ql), delta.rows(q0, ql), q0,
                                        k0, mask);
        }
      }
    }
  }
  const int chunks = static_cast<int>(cuts.size()) - 1;
  EXPECT_EQ(blocks_run, chunks * (chunks + 1) / 2);  // the lower triangle, diagonal included

  ref::AttentionShape s{L, L, H, Hkv, D, 0, 0, true};
  Vec out_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  ref::attention(to_vec(q), to_vec(k), to_vec(v), s, out_ref, lse_ref);
  ref::attention_backward(to_vec(dout), to_vec(q), to_vec(k), to_vec(v), s, dq_ref, dk_ref, dv_ref);
  EXPECT_LT(rel_rms_error(out, out_ref), kTol);
  EXPECT_LT(rel_rms_error(lse, lse_ref), kTol);
  EXPECT_LT(rel_rms_error(dq, dq_ref), kTol);
  EXPECT_LT(rel_rms_error(dk, dk_ref), kTol);
  EXPECT_LT(rel_rms_error(dv, dv_ref), kTol);
}

TEST(AttentionChunked, EqualChunks) { check_chunked(256, {64, 128, 192}, 2, 2, 16, 20); }
TEST(AttentionChunked, UnequalChunksGQA) { check_chunked(301, {97, 161, 250}, 4, 2, 16, 21); }
TEST(AttentionChunked, ManySmallChunks) {
  check_chunked(150, {10, 11, 40, 75, 76, 120}, 2, 1, 8, 22);
}

TEST(AttentionBlock, BackwardIsDeterministic) {
  Tensor q = random_tensor({300, 4, 32}, 30), k = random_tensor({300, 2, 32}, 31),
         v = random_tensor({300, 2, 32}, 32), dout = random_tensor({300, 4, 32}, 33);
  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({300, 4}),
         delta = Tensor::empty({300, 4});
  ops::attention_block_forward(out, lse, q, k, v, 0, 0, ops::Mask::Causal);
  ops::attention_backward_delta(delta, dout, out);
  Vec first;
  for (int run = 0; run < 3; ++run) {
    Tensor dq = Tensor::zeros(q.shape()), dk = Tensor::zeros(k.shape()),
           dv = Tensor::zeros(v.shape());
    ops::attention_block_backward(dq, dk, dv, q, k, v, dout, lse, delta, 0, 0, ops::Mask::Causal);
    Vec all = to_vec(dq);
    for (double x : to_vec(dk)) all.push_back(x);
    if (run == 0)
      first = all;
    else
      EXPECT_EQ(all, first);
  }
}

TEST(AttentionMerge, HandlesEmptyBlocksAndIsStable) {
  // Merging a block with lse = -inf changes nothing; into -inf it copies; huge LSEs stay finite.
  Tensor out = Tensor::empty({2, 1, 4}), lse = Tensor::empty({2, 1});
  Tensor ob = random_tensor({2, 1, 4}, 40), lb = Tensor::empty({2, 1});
  ops::fill(out, 0.0f);
  lse.f32()[0] = -std::numeric_limits<float>::infinity();
  lse.f32()[1] = 90.0f;
  lb.f32()[0] = 3.0f;
  lb.f32()[1] = -std::numeric_limits<float>::infinity();
  ops::attention_merge(out, lse, ob, lb);
  EXPECT_EQ(lse.f32()[0], 3.0f);
  EXPECT_EQ(out.f32()[0], ob.f32()[0]);
  EXPECT_EQ(lse.f32()[1], 90.0f);
  EXPECT_EQ(out.f32()[4], 0.0f);

  lb.f32()[0] = 3.0f + 1000.0f;  // exp(1000) overflows f32; the sigmoid form does not
  ops::attention_merge(out, lse, ob, lb);
  EXPECT_TRUE(std::isfinite(lse.f32()[0]));
  EXPECT_NEAR(lse.f32()[0], 1003.0f, 1e-3);
}

TEST(AttentionClassify, ByPositions) {
  EXPECT_EQ(ops::classify_block(100, 50, 150, 10), ops::BlockKind::Skip);
  EXPECT_EQ(ops::classify_block(100, 50, 0, 100), ops::BlockKind::Full);
  EXPECT_EQ(ops::classify_block(100, 50, 0, 101), ops::BlockKind::Full);  // key 100 <= query 100
  EXPECT_EQ(ops::classify_block(100, 50, 0, 102), ops::BlockKind::Causal);
  EXPECT_EQ(ops::classify_block(100, 50, 100, 50), ops::BlockKind::Causal);
  EXPECT_EQ(ops::classify_block(100, 50, 149, 50), ops::BlockKind::Causal);
}

}  // namespace
}  // namespace rt
