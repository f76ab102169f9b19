#include "parallel/ring_attention.h"

#include "kernels/ops.h"

namespace rt {

namespace {

void require_single_rank(const SequenceLayout& layout, Communicator* sp_group) {
  RT_CHECK(layout.sp == 1 && (!sp_group || sp_group->size() == 1),
           "ring attention across ", layout.sp, " ranks is not built yet");
}

ops::Mask mask_of(ops::BlockKind kind) {
  return kind == ops::BlockKind::Full ? ops::Mask::Full : ops::Mask::Causal;
}

}  // namespace

void ring_attention_forward(const SequenceLayout& layout, int64_t n_seqs, Communicator* sp_group,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                            const Tensor& lse, Arena& arena) {
  require_single_rank(layout, sp_group);
  RT_CHECK(q.size(0) == n_seqs * layout.local_len, "ring_attention: q has ", q.size(0),
           " rows for ", n_seqs, " sequences of ", layout.local_len);
  for (int64_t b = 0; b < n_seqs; ++b) {
    const int64_t base = b * layout.local_len;
    for (const Chunk& qc : layout.chunks) {
      const int64_t qr = base + qc.local_offset;
      bool first = true;
      for (const Chunk& kc : layout.chunks) {
        const auto kind = ops::classify_block(qc.global_start, qc.length, kc.global_start, kc.length);
        if (kind == ops::BlockKind::Skip) continue;
        const int64_t kr = base + kc.local_offset;
        Tensor qb = q.rows(qr, qc.length), kb = k.rows(kr, kc.length), vb = v.rows(kr, kc.length);
        if (first) {
          ops::attention_block_forward(out.rows(qr, qc.length), lse.rows(qr, qc.length), qb, kb,
                                       vb, qc.global_start, kc.global_start, mask_of(kind));
          first = false;
          continue;
        }
        Arena::Mark mark = arena.mark();
        Tensor ob = arena.alloc(qb.shape()), lb = arena.alloc({qc.length, q.size(1)});
        ops::attention_block_forward(ob, lb, qb, kb, vb, qc.global_start, kc.global_start,
                                     mask_of(kind));
        ops::attention_merge(out.rows(qr, qc.length), lse.rows(qr, qc.length), ob, lb);
        arena.release(mark);
      }
      RT_CHECK(!first, "a query chunk saw no key chunk (its own chunk is always visible)");
    }
  }
}

void ring_attention_backward(const SequenceLayout& layout, int64_t n_seqs,
                             Communicator* sp_group, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& dout,
                             const Tensor& lse, const Tensor& dq, const Tensor& dk,
                             const Tensor& dv, Arena& arena) {
  require_single_rank(layout, sp_group);
  Arena::Mark mark = arena.mark();
  Tensor delta = arena.alloc({q.size(0), q.size(1)});
  ops::attention_backward_delta(delta, dout, out);
  ops::fill(dq, 0.0f);
  ops::fill(dk, 0.0f);
  ops::fill(dv, 0.0f);
  for (int64_t b = 0; b < n_seqs; ++b) {
    const int64_t base = b * layout.local_len;
    for (const Chunk& qc : layout.chunks) {
      const int64_t qr = base + qc.local_offset;
      for (const Chunk& kc : layout.chunks) {
        const auto kind = ops::classify_block(qc.global_start, qc.length, kc.global_start, kc.length);
        if (kind == ops::BlockKind::Skip) continue;
        const int64_t kr = base + kc.local_offset;
        ops::attention_block_backward(
            dq.rows(qr, qc.length), dk.rows(kr, kc.length), dv.rows(kr, kc.length),
            q.rows(qr, qc.length), k.rows(kr, kc.length), v.rows(kr, kc.length),
            dout.rows(qr, qc.length), lse.rows(qr, qc.length), delta.rows(qr, qc.length),
            qc.global_start, kc.global_start, mask_of(kind));
      }
    }
  }
  arena.release(mark);
}

}  // namespace rt
