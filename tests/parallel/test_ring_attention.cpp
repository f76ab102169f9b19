// Ring attention across the ranks of the world (sp = world size) equals full causal attention
// on the whole sequence: out, lse, dq, dk, dv of this rank's zigzag rows against the naive
// double reference. Also: the bytes each rank sends match the analytic count.
#include <gtest/gtest.h>

#include "kernels/arena.h"
#include "parallel/ring_attention.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;

struct Case {
  int64_t chunk;  // tokens per zigzag chunk: L = 2 * sp * chunk
  int64_t n_seqs, H, Hkv, D;
};

// This rank's rows of a [n_seqs * L, heads, D] global tensor, in the layout's local order.
Vec local_rows(const Vec& global, const SequenceLayout& layout, int64_t n_seqs, int64_t width) {
  Vec out;
  for (int64_t b = 0; b < n_seqs; ++b)
    for (const Segment& c : layout.segments)
      for (int64_t t = 0; t < c.length; ++t) {
        const int64_t row = b * layout.seq_len + c.global_start + t;
        out.insert(out.end(), global.begin() + row * width, global.begin() + (row + 1) * width);
      }
  return out;
}

void check_ring(const Case& c, uint64_t seed) {
  auto world = mpi_world();
  const int sp = world->size(), rank = world->rank();
  const int64_t L = 2 * sp * c.chunk, N = c.n_seqs;
  const SequenceLayout layout = SequenceLayout::zigzag(L, sp, rank);
  const int64_t T = N * layout.local_len, qw = c.H * c.D, kw = c.Hkv * c.D;

  // Every rank draws the same global tensors and keeps its rows.
  const Vec q = testing::random_vec(N * L * qw, seed),
            k = testing::random_vec(N * L * kw, seed + 1),
            v = testing::random_vec(N * L * kw, seed + 2),
            dout = testing::random_vec(N * L * qw, seed + 3);
  Tensor lq = testing::from_vec(local_rows(q, layout, N, qw), {T, c.H, c.D});
  Tensor lk = testing::from_vec(local_rows(k, layout, N, kw), {T, c.Hkv, c.D});
  Tensor lv = testing::from_vec(local_rows(v, layout, N, kw), {T, c.Hkv, c.D});
  Tensor ldout = testing::from_vec(local_rows(dout, layout, N, qw), {T, c.H, c.D});

  const SequenceContext seq{&layout, N, world.get()};
  Arena arena;
  Tensor out = Tensor::empty({T, c.H, c.D}), lse = Tensor::empty({T, c.H});
  Tensor dq = Tensor::empty(lq.shape()), dk = Tensor::empty(lk.shape()),
         dv = Tensor::empty(lv.shape());
  const int64_t sent0 = world->bytes_sent();
  ring_attention_forward(seq, lq, lk, lv, out, lse, arena);
  const int64_t sent_forward = world->bytes_sent() - sent0;
  ring_attention_backward(seq, lq, lk, lv, out, ldout, lse, dq, dk, dv, arena);
  const int64_t sent_backward = world->bytes_sent() - sent0 - sent_forward;
  EXPECT_EQ(arena.in_use(), 0u);

  // Reference: each whole sequence at once, in double.
  Vec out_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  for (int64_t b = 0; b < N; ++b) {
    auto seq = [&](const Vec& x, int64_t w) {
      return Vec(x.begin() + b * L * w, x.begin() + (b + 1) * L * w);
    };
    ref::AttentionShape s{static_cast<int>(L),
                          static_cast<int>(L),
                          static_cast<int>(c.H),
                          static_cast<int>(c.Hkv),
                          static_cast<int>(c.D),
                          0,
                          0,
                          true};
    Vec o, l, gq, gk, gv;
    ref::attention(seq(q, qw), seq(k, kw), seq(v, kw), s, o, l);
    ref::attention_backward(seq(dout, qw), seq(q, qw), seq(k, kw), seq(v, kw), s, gq, gk, gv);
    out_ref.insert(out_ref.end(), o.begin(), o.end());
    lse_ref.insert(lse_ref.end(), l.begin(), l.end());
    dq_ref.insert(dq_ref.end(), gq.begin(), gq.end());
    dk_ref.insert(dk_ref.end(), gk.begin(), gk.end());
    dv_ref.insert(dv_ref.end(), gv.begin(), gv.end());
  }
  constexpr double kTol = 1e-5;
  EXPECT_LT(testing::rel_rms_error(out, local_rows(out_ref, layout, N, qw)), kTol)
      << "rank " << rank;
  EXPECT_LT(testing::rel_rms_error(lse, local_rows(lse_ref, layout, N, c.H)), kTol)
      << "rank " << rank;
  EXPECT_LT(testing::rel_rms_error(dq, local_rows(dq_ref, layout, N, qw)), kTol) << "rank " << rank;
  EXPECT_LT(testing::rel_rms_error(dk, local_rows(dk_ref, layout, N, kw)), kTol) << "rank " << rank;
  EXPECT_LT(testing::rel_rms_error(dv, local_rows(dv_ref, layout, N, kw)), kTol) << "rank " << rank;

  // K and V (kv_heads only) make sp - 1 hops forward; backward adds sp hops of dK and dV.
  const int64_t kv_bytes = 2 * T * kw * 4;
  EXPECT_EQ(sent_forward, (sp - 1) * kv_bytes) << "rank " << rank;
  EXPECT_EQ(sent_backward, sp == 1 ? 0 : (2 * sp - 1) * kv_bytes) << "rank " << rank;
}

TEST(RingAttention, MatchesFullAttention) { check_ring({64, 1, 2, 2, 16}, 1); }
TEST(RingAttention, GQAWithChunksNotMultiplesOfTheTile) { check_ring({100, 1, 4, 2, 16}, 2); }
TEST(RingAttention, SeveralSequencesPerBatch) { check_ring({40, 3, 2, 1, 8}, 3); }
TEST(RingAttention, LongerChunksThanOneTile) { check_ring({150, 1, 2, 2, 32}, 4); }

}  // namespace
}  // namespace rt
