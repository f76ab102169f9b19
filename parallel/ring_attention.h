// Causal attention over sequences whose tokens are spread across the sp ranks of a group
// (parallel/layout.h). Every (Q segment, KV segment) pair is classified by global positions
// (skip / full / causal) and computed with the block kernel of kernels/ops.h; results are
// merged in f32 with the stable sigmoid form. Backward uses the GLOBAL out and lse of each
// query (delta = rowsum(dout * out)) for every block.
//
//   q, out, dout, dq [n_seqs * local_len, H, D];  k, v, dk, dv [n_seqs * local_len, Hkv, D]
//   lse [n_seqs * local_len, H]; rows of sequence b start at b * local_len.
//
// sp_group may be null for a group of one. The K/V transfers of step s are posted before the
// blocks of step s are computed and waited for after (communication overlaps compute).
#pragma once

#include <cstdint>

#include "kernels/arena.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/layout.h"

namespace rt {

void ring_attention_forward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& out, const Tensor& lse, Arena& arena);

// dq, dk, dv are overwritten.
void ring_attention_backward(const SequenceContext& seq, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& dout,
                             const Tensor& lse, const Tensor& dq, const Tensor& dk,
                             const Tensor& dv, Arena& arena);

// Arena floats the calls use on top of their arguments (for the activation estimate).
int64_t ring_attention_forward_floats(const SequenceLayout& layout, int64_t T, int64_t H,
                                      int64_t Hkv, int64_t D);
int64_t ring_attention_backward_floats(const SequenceLayout& layout, int64_t T, int64_t H,
                                       int64_t Hkv, int64_t D);

}  // namespace rt
