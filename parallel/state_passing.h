// The gated linear recurrence (GLA, Mamba-2) over sequences cut across the sp ranks of a
// group (LASP-2 style, docs/DESIGN.md §6), and the halos of a causal convolution across the same
// cut.
//
// A sequence is 2*sp units of L/(2*sp) tokens (zigzag: this rank holds units r and 2sp-1-r,
// merged into one segment when adjacent). Each unit maps its incoming state affinely,
// S_out = Diag(e^Gamma) S_in + S_loc.
//   forward:  each rank computes (S_loc, Gamma) of its units from a zero state; one
//             all-gather; every rank scans all units in global order to get each unit's S_in;
//             then runs the recurrence on its segments with h0 = S_in.
//   backward: each rank computes the local term of each unit, the gradient of the unit's own
//             outputs with respect to its S_in; one all-gather; a reverse scan gives dS at
//             every unit boundary; then the recurrence's backward on each segment with
//             h0 = S_in and dh_final = dS after the segment covers every gradient.
// Communication per layer is independent of L: units x heads x dk x dv floats.
//
//   q, k [T, Hg, dk], v, o [T, H, dv], g [T, H, dk] or [T, H]; T = n_seqs * layout.local_len,
//   rows of sequence b from b * local_len (kernels/ops.h has the recurrence's contract).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/arena.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/layout.h"

namespace rt {

// What the forward leaves for the backward (arena tensors).
struct GlrSaved {
  std::vector<Tensor> states;  // per local segment: the recurrence's chunk states
  Tensor s_in;   // flat [n_seqs, 2sp + 1, H, dk, dv]: the state entering each unit (sp > 1)
  Tensor gamma;  // flat [n_seqs, 2sp, H, gw]: each unit's total decay (sp > 1)
};

void glr_sequences_forward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                           const Tensor& v, const Tensor& g, float scale, int64_t chunk,
                           const Tensor& o, GlrSaved& saved, Arena& arena);

// dq, dk, dv, dg overwritten.
void glr_sequences_backward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& g, float scale, int64_t chunk,
                            const Tensor& dout, const GlrSaved& saved, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv, const Tensor& dg, Arena& arena);

// Arena floats: kept from forward to backward, and used only while the forward or backward runs.
int64_t glr_sequences_saved_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                   int64_t dk, int64_t dv, bool vector_decay, int64_t chunk);
int64_t glr_sequences_forward_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                     int64_t dk, int64_t dv, bool vector_decay);
int64_t glr_sequences_backward_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t H,
                                      int64_t dk, int64_t dv);

// Causal convolution halos: for each local segment (sequence b, segment p at index
// b * segments + p) the W-1 rows of x before it; zeros for a segment that starts its sequence.
// halos [n_seqs * segments, W-1, C].
void conv_halos_forward(const SequenceContext& seq, const Tensor& x, const Tensor& halos,
                        Arena& arena);
// Adds the halos' gradients dhalos to the rows of dx they came from (on whichever rank).
void conv_halos_backward(const SequenceContext& seq, const Tensor& dhalos, const Tensor& dx,
                         Arena& arena);
int64_t conv_halos_floats(const SequenceLayout& layout, int64_t n_seqs, int64_t W, int64_t C);

}  // namespace rt
