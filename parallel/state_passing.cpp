#include "parallel/state_passing.h"

#include "kernels/ops.h"

namespace rt {

namespace {

// Where the 2*sp units of a sequence live: unit u is held by rank u (slot 0) for u < sp, by
// rank 2sp-1-u (slot 1) otherwise.
struct Units {
  explicit Units(const SequenceLayout& layout)
      : layout(layout),
        sp(layout.sp),
        count(2 * layout.sp),
        size(layout.seq_len / (2 * layout.sp)) {}
  int owner(int64_t u) const { return static_cast<int>(u < sp ? u : 2 * sp - 1 - u); }
  int slot(int64_t u) const { return u < sp ? 0 : 1; }
  int64_t mine(int slot_index) const {
    return slot_index == 0 ? layout.sp_rank : 2 * sp - 1 - layout.sp_rank;
  }
  int64_t first(const Segment& segment) const { return segment.global_start / size; }
  int64_t last(const Segment& segment) const {
    return (segment.global_start + segment.length) / size - 1;
  }
  // Local row of unit u (held by this rank) in sequence b.
  int64_t row(int64_t b, int64_t u) const {
    for (const Segment& c : layout.segments)
      if (u * size >= c.global_start && u * size < c.global_start + c.length)
        return b * layout.local_len + c.local_offset + (u * size - c.global_start);
    RT_CHECK(false, "unit ", u, " is not held by rank ", layout.sp_rank);
  }
  const SequenceLayout& layout;
  int64_t sp, count, size;
};

// A shaped view into a 1-d arena buffer.
Tensor at(const Tensor& buffer, int64_t offset, Shape shape) {
  return buffer.rows(offset, shape.numel()).view(shape);
}

int64_t chunk_states(int64_t length, int64_t chunk) { return (length + chunk - 1) / chunk + 1; }

Shape gamma_shape(int64_t H, int64_t dk, bool vector_decay) {
  return vector_decay ? Shape{H, dk} : Shape{H};
}

}  // namespace

void glr_sequences_forward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                           const Tensor& v, const Tensor& g, float scale, int64_t chunk,
                           const Tensor& o, GlrSaved& saved, Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  const Units units(layout);
  const int64_t H = v.size(1), dk = k.size(2), dv = v.size(2), SS = H * dk * dv;
  const bool vector_decay = g.ndim() == 3;
  const int64_t GW = H * (vector_decay ? dk : 1);

  saved.states.clear();
  for (int64_t b = 0; b < n_seqs; ++b)
    for (const Segment& segment : layout.segments)
      saved.states.push_back(arena.alloc({chunk_states(segment.length, chunk), H, dk, dv}));
  saved.s_in = Tensor();
  saved.gamma = Tensor();

  if (layout.sp > 1) {
    RT_CHECK(sp_group && sp_group->size() == layout.sp, "state passing: no sp group of ",
             layout.sp);
    saved.s_in = arena.alloc({n_seqs * (units.count + 1) * SS});
    saved.gamma = arena.alloc({n_seqs * units.count * GW});
    const Arena::Mark mark = arena.mark();
    // Each of this rank's units as an affine map of its incoming state.
    const int64_t payload = SS + GW;
    Tensor mine = arena.alloc({n_seqs * 2 * payload});
    for (int64_t b = 0; b < n_seqs; ++b)
      for (int s = 0; s < 2; ++s) {
        const int64_t u = units.mine(s), row = units.row(b, u), base = (b * 2 + s) * payload;
        ops::glr_chunk_summary(
            at(mine, base, {H, dk, dv}), at(mine, base + SS, gamma_shape(H, dk, vector_decay)),
            k.rows(row, units.size), v.rows(row, units.size), g.rows(row, units.size), chunk);
      }
    Tensor all = arena.alloc({layout.sp * n_seqs * 2 * payload});
    sp_group->allgather(mine.data(), all.data(), static_cast<int64_t>(mine.nbytes()),
                        "allgather(state summaries)");
    // Every unit in global order, then the scan.
    Tensor s_loc = arena.alloc({units.count, H, dk, dv});
    for (int64_t b = 0; b < n_seqs; ++b) {
      const Tensor gamma_b = at(saved.gamma, b * units.count * GW,
                                vector_decay ? Shape{units.count, H, dk} : Shape{units.count, H});
      for (int64_t u = 0; u < units.count; ++u) {
        const int64_t src = ((units.owner(u) * n_seqs + b) * 2 + units.slot(u)) * payload;
        copy_tensor(s_loc.rows(u, 1), at(all, src, {1, H, dk, dv}));
        copy_tensor(at(gamma_b.view({units.count * GW}), u * GW, {GW}), at(all, src + SS, {GW}));
      }
      ops::glr_state_scan(at(saved.s_in, b * (units.count + 1) * SS, {units.count + 1, H, dk, dv}),
                          s_loc, gamma_b, false);
    }
    arena.release(mark);
  }

  size_t p = 0;
  for (int64_t b = 0; b < n_seqs; ++b)
    for (const Segment& segment : layout.segments) {
      const int64_t row = b * layout.local_len + segment.local_offset, n = segment.length;
      const Tensor h0 =
          layout.sp > 1
              ? at(saved.s_in, (b * (units.count + 1) + units.first(segment)) * SS, {H, dk, dv})
              : Tensor();
      ops::glr_forward(o.rows(row, n), Tensor(), saved.states[p++], q.rows(row, n), k.rows(row, n),
                       v.rows(row, n), g.rows(row, n), h0, scale, chunk);
    }
}

void glr_sequences_backward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& g, float scale, int64_t chunk,
                            const Tensor& dout, const GlrSaved& saved, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv, const Tensor& dg, Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  const Units units(layout);
  const int64_t H = v.size(1), dkk = k.size(2), dvv = v.size(2), SS = H * dkk * dvv;
  const bool vector_decay = g.ndim() == 3;
  const int64_t GW = H * (vector_decay ? dkk : 1);
  const Arena::Mark mark = arena.mark();

  // dS at every unit boundary of every sequence (sp > 1).
  Tensor ds;
  if (layout.sp > 1) {
    ds = arena.alloc({n_seqs * (units.count + 1) * SS});
    Tensor mine = arena.alloc({n_seqs * 2 * SS});
    for (int64_t b = 0; b < n_seqs; ++b)
      for (int s = 0; s < 2; ++s) {
        const int64_t u = units.mine(s), row = units.row(b, u);
        ops::glr_state_gradient(at(mine, (b * 2 + s) * SS, {H, dkk, dvv}), q.rows(row, units.size),
                                g.rows(row, units.size), dout.rows(row, units.size), scale, chunk);
      }
    Tensor all = arena.alloc({layout.sp * n_seqs * 2 * SS});
    sp_group->allgather(mine.data(), all.data(), static_cast<int64_t>(mine.nbytes()),
                        "allgather(state gradients)");
    Tensor local = arena.alloc({units.count, H, dkk, dvv});
    for (int64_t b = 0; b < n_seqs; ++b) {
      for (int64_t u = 0; u < units.count; ++u)
        copy_tensor(
            local.rows(u, 1),
            at(all, ((units.owner(u) * n_seqs + b) * 2 + units.slot(u)) * SS, {1, H, dkk, dvv}));
      const Tensor gamma_b = at(saved.gamma, b * units.count * GW,
                                vector_decay ? Shape{units.count, H, dkk} : Shape{units.count, H});
      ops::glr_state_scan(at(ds, b * (units.count + 1) * SS, {units.count + 1, H, dkk, dvv}), local,
                          gamma_b, true);
    }
  }

  size_t p = 0;
  for (int64_t b = 0; b < n_seqs; ++b)
    for (const Segment& segment : layout.segments) {
      const int64_t row = b * layout.local_len + segment.local_offset, n = segment.length;
      // The forward's saved states already start from the segment's incoming state.
      const Tensor dh_final =
          layout.sp > 1
              ? at(ds, (b * (units.count + 1) + units.last(segment) + 1) * SS, {H, dkk, dvv})
              : Tensor();
      ops::glr_backward(dq.rows(row, n), dk.rows(row, n), dv.rows(row, n), dg.rows(row, n),
                        Tensor(), q.rows(row, n), k.rows(row, n), v.rows(row, n), g.rows(row, n),
                        saved.states[p++], dout.rows(row, n), dh_final, scale, chunk);
    }
  arena.release(mark);
}

int64_t glr_sequences_saved_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                   int64_t dk, int64_t dv, bool vector_decay, int64_t chunk) {
  const int64_t SS = H * dk * dv, units = 2 * layout.sp;
  int64_t n = 0;
  for (const Segment& segment : layout.segments) n += chunk_states(segment.length, chunk) * SS;
  n *= n_seqs;
  if (layout.sp > 1) n += n_seqs * ((units + 1) * SS + units * H * (vector_decay ? dk : 1));
  return n;
}

int64_t glr_sequences_forward_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                     int64_t dk, int64_t dv, bool vector_decay) {
  if (layout.sp == 1) return 0;
  const int64_t SS = H * dk * dv, payload = SS + H * (vector_decay ? dk : 1);
  return (1 + layout.sp) * n_seqs * 2 * payload + 2 * layout.sp * SS;
}

int64_t glr_sequences_backward_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                      int64_t dk, int64_t dv) {
  if (layout.sp == 1) return 0;
  const int64_t SS = H * dk * dv, units = 2 * layout.sp;
  return n_seqs * (units + 1) * SS + (1 + layout.sp) * n_seqs * 2 * SS + units * SS;
}

void conv_halos_forward(const SequenceContext& seq, const Tensor& x, const Tensor& halos,
                        Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  const Units units(layout);
  const int64_t C = x.size(1), rows = halos.size(1),
                segments = static_cast<int64_t>(layout.segments.size());
  RT_CHECK(halos.size(0) == n_seqs * segments && rows <= units.size,
           "conv halos: ", halos.shape().str(), " for ", n_seqs, " x ", segments,
           " segments of units of ", units.size);
  ops::fill(halos, 0.0f);
  if (layout.sp == 1) return;  // one segment per sequence, starting it: zeros
  const Arena::Mark mark = arena.mark();
  // The last rows of each of this rank's units, gathered from every rank.
  Tensor mine = arena.alloc({n_seqs * 2 * rows, C});
  for (int64_t b = 0; b < n_seqs; ++b)
    for (int s = 0; s < 2; ++s)
      copy_tensor(mine.rows((b * 2 + s) * rows, rows),
                  x.rows(units.row(b, units.mine(s)) + units.size - rows, rows));
  Tensor all = arena.alloc({layout.sp * n_seqs * 2 * rows, C});
  sp_group->allgather(mine.data(), all.data(), static_cast<int64_t>(mine.nbytes()),
                      "allgather(conv halos)");
  for (int64_t b = 0; b < n_seqs; ++b)
    for (int64_t p = 0; p < segments; ++p) {
      const int64_t u = units.first(layout.segments[p]);
      if (u == 0) continue;
      const int64_t src = ((units.owner(u - 1) * n_seqs + b) * 2 + units.slot(u - 1)) * rows;
      copy_tensor(halos.rows(b * segments + p, 1).view({rows, C}), all.rows(src, rows));
    }
  arena.release(mark);
}

void conv_halos_backward(const SequenceContext& seq, const Tensor& dhalos, const Tensor& dx,
                         Arena& arena) {
  const SequenceLayout& layout = *seq.layout;
  const int64_t n_seqs = seq.n_seqs;
  Communicator* sp_group = seq.sp_group;
  if (layout.sp == 1) return;  // the only halo is the zero before the sequence
  const Units units(layout);
  const int64_t C = dx.size(1), rows = dhalos.size(1),
                segments = static_cast<int64_t>(layout.segments.size());
  const Arena::Mark mark = arena.mark();
  // Slot s carries the gradient of the rows before unit mine(s) when a segment starts there.
  Tensor mine = arena.zeros({n_seqs * 2 * rows, C});
  for (int64_t b = 0; b < n_seqs; ++b)
    for (int64_t p = 0; p < segments; ++p) {
      const int64_t u = units.first(layout.segments[p]);
      if (u == 0) continue;
      copy_tensor(mine.rows((b * 2 + units.slot(u)) * rows, rows),
                  dhalos.rows(b * segments + p, 1).view({rows, C}));
    }
  Tensor all = arena.alloc({layout.sp * n_seqs * 2 * rows, C});
  sp_group->allgather(mine.data(), all.data(), static_cast<int64_t>(mine.nbytes()),
                      "allgather(conv halo gradients)");
  for (int64_t b = 0; b < n_seqs; ++b)
    for (int s = 0; s < 2; ++s) {
      const int64_t u = units.mine(s);
      if (u + 1 >= units.count) continue;
      const int64_t src = ((units.owner(u + 1) * n_seqs + b) * 2 + units.slot(u + 1)) * rows;
      ops::accumulate(dx.rows(units.row(b, u) + units.size - rows, rows), all.rows(src, rows));
    }
  arena.release(mark);
}

int64_t conv_halos_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t W, int64_t C) {
  return layout.sp == 1 ? 0 : (1 + layout.sp) * n_seqs * 2 * (W - 1) * C;
}

}  // namespace rt
