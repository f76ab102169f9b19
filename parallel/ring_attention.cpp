// RingAttention (Liu et al.) on the zigzag layout.
//
// Forward, sp steps. At step s this rank holds the K/V rows of rank src = r - s (mod sp): it
// posts the transfer of that block to r + 1 (and the receipt of the next from r - 1), computes
// every (local Q segment, src KV segment) block the positions allow, merges, then waits and swaps.
// Only the kv_heads travel (GQA).
//
// Backward, sp steps. K/V travel as in the forward; next to them travels dK/dV (f32) of the
// same block, accumulating each rank's contribution: at step s this rank computes its part of
// dK/dV for src's block while the previous step's dK/dV exchange is in flight, then adds the
// partial sum that rank r - 1 sent for this same block and passes the total on. After the
// last step every block's total makes one more hop and arrives at its owner. Every block uses
// the GLOBAL out and lse of its queries (delta = rowsum(dout * out)), never per-block ones.
#include "parallel/ring_attention.h"

#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace rt {

namespace {

enum Tag { kTagK = 11, kTagV = 12, kTagDK = 13, kTagDV = 14 };

ops::Mask mask_of(ops::BlockKind kind) {
  return kind == ops::BlockKind::Full ? ops::Mask::Full : ops::Mask::Causal;
}

struct Ring {
  Ring(const SequenceLayout& layout, Communicator* group)
      : comm(group), sp(layout.sp), rank(layout.sp_rank) {
    RT_CHECK(sp == 1 || (comm && comm->size() == sp && comm->rank() == rank),
             "ring attention: the sp group does not match the layout (", sp, " ranks, rank ", rank,
             ")");
    next = (rank + 1) % sp;
    prev = (rank + sp - 1) % sp;
  }
  int source(int step) const { return (rank - step + sp) % sp; }

  // Sends a and b to the next rank and receives the previous rank's into ra and rb.
  std::vector<Communicator::Request> exchange(const Tensor& a, const Tensor& b, const Tensor& ra,
                                              const Tensor& rb, int tag_a, int tag_b) const {
    comm->group_start();
    std::vector<Communicator::Request> requests = {
        comm->isend(a.data(), static_cast<int64_t>(a.nbytes()), next, tag_a),
        comm->isend(b.data(), static_cast<int64_t>(b.nbytes()), next, tag_b),
        comm->irecv(ra.data(), static_cast<int64_t>(ra.nbytes()), prev, tag_a),
        comm->irecv(rb.data(), static_cast<int64_t>(rb.nbytes()), prev, tag_b)};
    comm->group_end();
    return requests;
  }

  Communicator* comm;
  int sp, rank, next, prev;
};

// One (Q segment, KV segment) pair of one sequence: rows in the local buffers, segments, mask.
struct Block {
  size_t q_index;  // sequence * segments per rank + segment: which query segment of this rank
  int64_t q_row, kv_row;
  const Segment& qc;
  const Segment& kc;
  ops::Mask mask;
};

// Calls fn(block) for every block that is not skipped, sequence by sequence, with this rank's
// segments as queries and `source`'s as keys.
template <class Fn>
void for_each_block(const SequenceLayout& layout, int source, int64_t n_seqs, Fn&& fn) {
  const SequenceLayout kv_layout = SequenceLayout::zigzag(layout.seq_len, layout.sp, source);
  for (int64_t b = 0; b < n_seqs; ++b) {
    const int64_t base = b * layout.local_len;
    for (size_t i = 0; i < layout.segments.size(); ++i) {
      const Segment& qc = layout.segments[i];
      for (const Segment& kc : kv_layout.segments) {
        const auto kind =
            ops::classify_block(qc.global_start, qc.length, kc.global_start, kc.length);
        if (kind == ops::BlockKind::Skip) continue;
        fn(Block{static_cast<size_t>(b) * layout.segments.size() + i, base + qc.local_offset,
                 base + kc.local_offset, qc, kc, mask_of(kind)});
      }
    }
  }
}

int64_t longest_segment(const SequenceLayout& layout) {
  int64_t n = 0;
  for (const Segment& c : layout.segments) n = std::max(n, c.length);
  return n;
}

}  // namespace

int64_t ring_attention_forward_floats(const SequenceLayout& layout, int64_t T, int64_t H,
                                      int64_t Hkv, int64_t D) {
  const bool merges = layout.sp > 1 || layout.segments.size() > 1;
  const int64_t merge = merges ? longest_segment(layout) * (H * D + H) : 0;
  return merge + (layout.sp > 1 ? 4 * T * Hkv * D : 0);
}

int64_t ring_attention_backward_floats(const SequenceLayout& layout, int64_t T, int64_t H,
                                       int64_t Hkv, int64_t D) {
  return T * H + (layout.sp > 1 ? 10 * T * Hkv * D : 0);
}

void ring_attention_forward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& out, const Tensor& lse, Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  const Ring ring(layout, sp_group);
  RT_CHECK(q.size(0) == n_seqs * layout.local_len, "ring_attention: q has ", q.size(0),
           " rows for ", n_seqs, " sequences of ", layout.local_len);
  const int64_t H = q.size(1), D = q.size(2);
  const Arena::Mark mark = arena.mark();
  Tensor merge_out, merge_lse;
  if (layout.sp > 1 || layout.segments.size() > 1) {
    merge_out = arena.alloc({longest_segment(layout), H, D});
    merge_lse = arena.alloc({longest_segment(layout), H});
  }
  Tensor recv[2][2];  // [buffer][k, v], used alternately
  if (ring.sp > 1)
    for (auto& buf : recv)
      for (auto& t : buf) t = arena.alloc(k.shape());

  // The first block a query segment sees writes out/lse; later ones merge into them.
  std::vector<char> written(static_cast<size_t>(n_seqs) * layout.segments.size(), 0);
  Tensor k_cur = k, v_cur = v;
  for (int step = 0; step < ring.sp; ++step) {
    std::vector<Communicator::Request> pending;
    if (step + 1 < ring.sp)
      pending = ring.exchange(k_cur, v_cur, recv[step % 2][0], recv[step % 2][1], kTagK, kTagV);
    for_each_block(layout, ring.source(step), n_seqs, [&](const Block& b) {
      const int64_t qn = b.qc.length, kn = b.kc.length;
      const Tensor qb = q.rows(b.q_row, qn), kb = k_cur.rows(b.kv_row, kn),
                   vb = v_cur.rows(b.kv_row, kn);
      const Tensor o = out.rows(b.q_row, qn), l = lse.rows(b.q_row, qn);
      if (!written[b.q_index]) {
        ops::attention_block_forward(o, l, qb, kb, vb, b.qc.global_start, b.kc.global_start,
                                     b.mask);
        written[b.q_index] = 1;
        return;
      }
      const Tensor ob = merge_out.rows(0, qn), lb = merge_lse.rows(0, qn);
      ops::attention_block_forward(ob, lb, qb, kb, vb, b.qc.global_start, b.kc.global_start,
                                   b.mask);
      ops::attention_merge(o, l, ob, lb);
    });
    if (step + 1 < ring.sp) {
      ring.comm->wait(pending, "ring attention forward (K/V exchange)");
      k_cur = recv[step % 2][0];
      v_cur = recv[step % 2][1];
    }
  }
  for (char w : written)
    RT_CHECK(w, "a query segment saw no key segment (its own is always visible)");
  arena.release(mark);
}

void ring_attention_backward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& dout,
                             const Tensor& lse, const Tensor& dq, const Tensor& dk,
                             const Tensor& dv, Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  const Ring ring(layout, sp_group);
  const Arena::Mark mark = arena.mark();
  Tensor delta = arena.alloc({q.size(0), q.size(1)});
  ops::attention_backward_delta(delta, dout, out);
  ops::fill(dq, 0.0f);

  auto accumulate_blocks = [&](int step, const Tensor& k_cur, const Tensor& v_cur,
                               const Tensor& dk_acc, const Tensor& dv_acc) {
    for_each_block(layout, ring.source(step), n_seqs, [&](const Block& b) {
      const int64_t qn = b.qc.length, kn = b.kc.length;
      ops::attention_block_backward(
          dq.rows(b.q_row, qn), dk_acc.rows(b.kv_row, kn), dv_acc.rows(b.kv_row, kn),
          q.rows(b.q_row, qn), k_cur.rows(b.kv_row, kn), v_cur.rows(b.kv_row, kn),
          dout.rows(b.q_row, qn), lse.rows(b.q_row, qn), delta.rows(b.q_row, qn), b.qc.global_start,
          b.kc.global_start, b.mask);
    });
  };

  if (ring.sp == 1) {
    ops::fill(dk, 0.0f);
    ops::fill(dv, 0.0f);
    accumulate_blocks(0, k, v, dk, dv);
    arena.release(mark);
    return;
  }

  Tensor kv_recv[2][2], d_out[2][2], d_in[2];  // [buffer][k, v]
  for (auto* group : {&kv_recv[0], &kv_recv[1], &d_out[0], &d_out[1], &d_in})
    for (auto& t : *group) t = arena.alloc(k.shape());

  Tensor k_cur = k, v_cur = v;
  std::vector<Communicator::Request> kv_pending, d_pending;
  for (int step = 0; step < ring.sp; ++step) {
    if (step + 1 < ring.sp)
      kv_pending =
          ring.exchange(k_cur, v_cur, kv_recv[step % 2][0], kv_recv[step % 2][1], kTagK, kTagV);
    // This step's share of dK/dV for the block we hold, while the last exchange is in flight.
    // d_out[step % 2] was last sent two steps ago; that send completed at the previous wait.
    const Tensor& dk_step = d_out[step % 2][0];
    const Tensor& dv_step = d_out[step % 2][1];
    ops::fill(dk_step, 0.0f);
    ops::fill(dv_step, 0.0f);
    accumulate_blocks(step, k_cur, v_cur, dk_step, dv_step);
    if (step > 0) {
      // d_in now holds what ranks before this one gave for the same block: add it, pass it on.
      ring.comm->wait(d_pending, "ring attention backward (dK/dV exchange)");
      ops::accumulate(dk_step, d_in[0]);
      ops::accumulate(dv_step, d_in[1]);
    }
    d_pending = ring.exchange(dk_step, dv_step, d_in[0], d_in[1], kTagDK, kTagDV);
    if (step + 1 < ring.sp) {
      ring.comm->wait(kv_pending, "ring attention backward (K/V exchange)");
      k_cur = kv_recv[step % 2][0];
      v_cur = kv_recv[step % 2][1];
    }
  }
  // The last hop: our own block's total arrives from the previous rank.
  ring.comm->wait(d_pending, "ring attention backward (dK/dV home)");
  copy_tensor(dk, d_in[0]);
  copy_tensor(dv, d_in[1]);
  arena.release(mark);
}

}  // namespace rt
