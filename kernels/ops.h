// Every compute op of ringtrain: its contract (shapes, semantics) and its dispatch.
// Each op checks shapes and dtypes, then runs the implementation of its inputs' device
// (cpu:: in kernels/cpu/, cuda:: in kernels/cuda/). Layers are written once against this file.
//
// Conventions (llm.c style):
//   T   tokens in the batch (rows), C model width, V vocabulary, F MLP hidden width
//   H   query heads, Hkv key/value heads (GQA: H % Hkv == 0), D head dim
//   Linear weights are [out_features, in_features]; y = x W^T.
//   "accumulate" outputs are added to (+=); the others are overwritten.
//   Everything is f32, except under run.precision: bf16 (docs/DESIGN.md §3) the weights of the
//   linear ops (a bf16 copy; the GEMM then rounds its f32 operands to bf16 and accumulates in f32)
//   and the residual stream (RMSNorm's input, add_bf16's output).
#pragma once

#include <cstdint>

#include "kernels/rope_frequencies.h"
#include "kernels/tensor.h"

namespace rt::ops {

// ---- element-wise and reductions --------------------------------------------------------
void fill(const Tensor& x, float value);
void add(const Tensor& out, const Tensor& a, const Tensor& b);  // out = a + b (out may alias a)
// out = bf16(a + b), out and b bf16, a f32: a layer's output joining the bf16 residual stream
// (run.precision: bf16); out may alias b.
void add_bf16(const Tensor& out, const Tensor& a, const Tensor& b);
void accumulate(const Tensor& dst, const Tensor& src);  // dst += src
void scale(const Tensor& x, float factor);              // x *= factor
double sum_squares(const Tensor& x);  // deterministic: fixed blocking, double partial sums
bool all_finite(const Tensor& x);

// ---- GEMM -------------------------------------------------------------------------------
// out[M,N] = alpha * op(a) op(b) + beta * out, op = transpose when the flag is set.
void matmul(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
            float alpha = 1.0f, float beta = 0.0f);

// out = x rounded to the nearest bf16 (ties to even): x f32, out bf16 of the same shape.
void to_bf16(const Tensor& out, const Tensor& x);

// out[T,OC] = inp[T,C] weight[OC,C]^T. weight f32, or bf16: then inp (and in the backward dout)
// go into the GEMMs rounded to bf16; out, dinp and dweight stay f32.
void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight);
// dinp[T,C] (+)= dout[T,OC] weight ; dweight[OC,C] += dout^T inp.
// dinp is accumulated when accumulate_dinp, else overwritten; an undefined dinp is skipped.
void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight, bool accumulate_dinp);

// ---- embedding --------------------------------------------------------------------------
// out[T,C] = table[tokens[t]]; tokens i32 [T] in [0, V)
void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& table);
// dtable[V,C] += scatter of dout[T,C] by tokens (deterministic order)
void embedding_backward(const Tensor& dtable, const Tensor& tokens, const Tensor& dout);

// ---- RMSNorm ----------------------------------------------------------------------------
// out[T,C] = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps) over each of `groups`
// groups of C/groups channels: rstd [T] (groups = 1) or [T, groups]. inp f32 or bf16 (the
// residual stream under run.precision: bf16), everything else f32.
void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps, int64_t groups = 1);
// dinp[T,C] += ..., dweight[C] += ... (both accumulate: dinp is the residual stream's gradient)
void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                      int64_t groups = 1);

// ---- activations ------------------------------------------------------------------------
// silu(x) = x * sigmoid(x)
void silu_forward(const Tensor& out, const Tensor& inp);
void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp);  // overwrite
// gate_up[T,2F] = [gate | up]; out[T,F] = silu(gate) * up
void swiglu_forward(const Tensor& out, const Tensor& gate_up);
void swiglu_backward(const Tensor& dgate_up, const Tensor& dout, const Tensor& gate_up);
// Squared ReLU (Primer; NemotronH's MLP): out = max(x, 0)^2; dinp = 2 max(x, 0) dout (overwrite).
void relu2_forward(const Tensor& out, const Tensor& inp);
void relu2_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp);

// out = a * silu(gate), element by element (same shapes); backward overwrites da and dgate.
void silu_gate_forward(const Tensor& out, const Tensor& a, const Tensor& gate);
void silu_gate_backward(const Tensor& da, const Tensor& dgate, const Tensor& dout, const Tensor& a,
                        const Tensor& gate);
// out[T,C] = scale * logsigmoid(x + bias[c]) (a decay <= 0, GLA's gate); dx overwritten,
// dbias [C] accumulates.
void logsigmoid_forward(const Tensor& out, const Tensor& x, const Tensor& bias, float scale);
// out[t, c] += bias[c]   out [T, C]; backward: dbias [C] += sum_t dout[t, c] (in fixed row
// blocks: deterministic)
void add_bias_forward(const Tensor& out, const Tensor& bias);
void add_bias_backward(const Tensor& dbias, const Tensor& dout);
void logsigmoid_backward(const Tensor& dx, const Tensor& dbias, const Tensor& dout, const Tensor& x,
                         const Tensor& bias, float scale);

// ---- causal depthwise convolution -------------------------------------------------------
// out[t, c] = bias[c] + sum_{i<W} weight[c, i] * x[t + i - (W-1), c]   x, out [T, C],
// weight [C, W], bias [C] (optional); rows before the first come from halo [W-1, C] (the
// previous rows of the sequence) or are zero when halo is undefined.
void conv1d_causal_forward(const Tensor& out, const Tensor& x, const Tensor& weight,
                           const Tensor& bias, const Tensor& halo);
// dx overwritten; dweight, dbias accumulate; dhalo [W-1, C] (optional) overwritten with the
// gradient of the halo rows (to be sent back to their owner).
void conv1d_causal_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                            const Tensor& dhalo, const Tensor& dout, const Tensor& x,
                            const Tensor& weight, const Tensor& halo);

// ---- Mamba-2's element-wise parts ------------------------------------------------------
// dt [T,H] = softplus(dt_raw + dt_bias), g [T,H] = -exp(A_log) * dt (the decay, <= 0)
void mamba_dt_forward(const Tensor& dt, const Tensor& g, const Tensor& dt_raw,
                      const Tensor& dt_bias, const Tensor& a_log);
// From ddt (reaching dt directly) and dg: ddt_raw overwritten, ddt_bias and da_log accumulate.
void mamba_dt_backward(const Tensor& ddt_raw, const Tensor& ddt_bias, const Tensor& da_log,
                       const Tensor& ddt, const Tensor& dg, const Tensor& dt_raw,
                       const Tensor& dt_bias, const Tensor& a_log);
// out[t,h,:] = s[t,h] * x[t,h,:]   x, out [T,H,P], s [T,H]; backward: dx += s dout, ds = sum_p
void scale_heads_forward(const Tensor& out, const Tensor& x, const Tensor& s);
void scale_heads_backward(const Tensor& dx, const Tensor& ds, const Tensor& dout, const Tensor& x,
                          const Tensor& s);
// y[t,h,:] = o[t,h,:] + d[h] * x[t,h,:]; backward: dx += d dy, dd [H] += sum_{t,p} dy x
void skip_heads_forward(const Tensor& y, const Tensor& o, const Tensor& x, const Tensor& d);
void skip_heads_backward(const Tensor& dx, const Tensor& dd, const Tensor& dy, const Tensor& x,
                         const Tensor& d);

// ---- rotary position embedding ----------------------------------------------------------
// table[T, D/2, 2] = attention_factor (cos, sin) of positions[t] * inv_freq[i], inv_freq of
// kernels/rope_frequencies.h, angles computed in double so that positions near 2^20 keep their
// precision. positions: i32 [T], global token positions.
void rope_table(const Tensor& table, const Tensor& positions, const RopeFrequencies& freq);
// x[T, heads, D] rotated in place, rotate-half convention (pairs (i, i + D/2)).
void rope_forward(const Tensor& x, const Tensor& table);
// The transpose (inverse) rotation, applied in place to the gradient.
void rope_backward(const Tensor& dx, const Tensor& table);

// ---- attention blocks -------------------------------------------------------------------
// One (Q chunk, KV chunk) block of causal attention; a sequence is any set of blocks merged.
//   q [Tq, H, D], k, v [Tk, Hkv, D]; query i sits at global position q_pos0 + i, key j at
//   k_pos0 + j. Mask Causal keeps key j for query i when k_pos0 + j <= q_pos0 + i; Full keeps all.
//   out [Tq, H, D] = softmax(q k^T / sqrt(D)) v over the kept keys; lse [Tq, H] its log-sum-exp
//   (-inf and out = 0 for a query with no kept key).
enum class Mask { Full, Causal };
void attention_block_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                             const Tensor& v, int64_t q_pos0, int64_t k_pos0, Mask mask);
// Merges a block's (out_blk, lse_blk) into the running (out, lse) in f32 with the stable form
//   out -= sigmoid(lse_blk - lse) * (out - out_blk);  lse -= logsigmoid(lse - lse_blk)
void attention_merge(const Tensor& out, const Tensor& lse, const Tensor& out_blk,
                     const Tensor& lse_blk);
// delta[Tq, H] = rowsum(dout * out), computed once per Q chunk from the GLOBAL out.
void attention_backward_delta(const Tensor& delta, const Tensor& dout, const Tensor& out);
// Gradients of one block given the GLOBAL lse and delta of the queries; dq, dk, dv accumulate.
void attention_block_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& dout,
                              const Tensor& lse, const Tensor& delta, int64_t q_pos0,
                              int64_t k_pos0, Mask mask);
// Which kind of work a block is, from the positions alone: skip when every key is after every
// query (causal), full when every key is at or before every query, causal otherwise.
enum class BlockKind { Skip, Full, Causal };
BlockKind classify_block(int64_t q_pos0, int64_t q_len, int64_t k_pos0, int64_t k_len);

// ---- gated linear recurrence (GLA, Mamba-2) -----------------------------------------------
// Per head h, for one sequence (docs/DESIGN.md §5):
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = scale * S_t^T q_t,  S_{-1} = h0
//   q, k [T, Hg, dk]: heads h of a group (h / (H / Hg)) share q and k (Mamba-2's B and C);
//   v, o [T, H, dv]; g <= 0: [T, H, dk] per-channel decay (GLA, needs Hg == H) or [T, H] one
//   decay per head (Mamba-2, a faster path); h0, h_final [H, dk, dv] (undefined h0 = zeros).
//   chunk: tokens per chunk, 16..256 (results agree to rounding for any chunk).
// Forward: o (undefined = state only), h_final, and states [ceil(T/chunk) + 1, H, dk, dv] (the
// state entering each chunk and the final one: what backward needs), each optional.
void glr_forward(const Tensor& o, const Tensor& h_final, const Tensor& states, const Tensor& q,
                 const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& h0, float scale,
                 int64_t chunk);
// Gradients of sum(o * dout) + sum(h_final * dh_final) (undefined dh_final = zeros), with the
// forward's states. dq, dk, dv, dg are overwritten; dh0 is optional.
void glr_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dg,
                  const Tensor& dh0, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& g, const Tensor& states, const Tensor& dout, const Tensor& dh_final,
                  float scale, int64_t chunk);
// A zigzag unit of a sequence as an affine map of its incoming state,
// S_out = Diag(e^gamma) S_in + s_loc: s_loc [H, dk, dv] (its final state from zero), gamma [H, dk]
// or [H] (its total decay).
void glr_chunk_summary(const Tensor& s_loc, const Tensor& gamma, const Tensor& k, const Tensor& v,
                       const Tensor& g, int64_t chunk);
// The gradient of sum(o * dout) with respect to h0 through the unit's own outputs,
// scale * sum_t (q_t e^{B_t})^T dout_t: the local term of the state-passing backward.
void glr_state_gradient(const Tensor& ds, const Tensor& q, const Tensor& g, const Tensor& dout,
                        float scale, int64_t chunk);

// Scan of the units of a sequence, each an affine map S_out = Diag(e^gamma_c) S_in + s_loc_c:
//   forward: out[0] = 0, out[c+1] = Diag(e^gamma_c) out[c] + s_loc[c]     (states entering)
//   reverse: out[n] = 0, out[c] = s_loc[c] + Diag(e^gamma_c) out[c+1]     (gradients: s_loc
//            holds each unit's local state gradient)
// out [n+1, H, dk, dv], s_loc [n, H, dk, dv], gamma [n, H, dk] or [n, H].
void glr_state_scan(const Tensor& out, const Tensor& s_loc, const Tensor& gamma, bool reverse);

// ---- LM head + cross entropy, fused -----------------------------------------------------
// logits = h[T,C] weight[V,C]^T, computed in token blocks; the [T,V] logits never exist.
// targets i32 [T]; a target < 0 is ignored. Returns sum over kept tokens of
// -log softmax(logits)[target], accumulated in double.
// When dh is defined: dh[T,C] = grad_scale * d(loss sum)/dh (overwritten) and
// dweight[V,C] += grad_scale * d(loss sum)/dweight.
// When token_losses [T] is defined it receives each token's loss (0 for ignored ones).
double lm_head_loss(const Tensor& h, const Tensor& weight, const Tensor& targets, const Tensor& dh,
                    const Tensor& dweight, float grad_scale, const Tensor& token_losses = Tensor());

// argmax over the vocabulary of h[T,C] weight[V,C]^T for each token, in token blocks: out i32 [T].
void lm_head_argmax(const Tensor& out, const Tensor& h, const Tensor& weight);

// ---- optimizer --------------------------------------------------------------------------
struct AdamW {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // 1-based, for bias correction
};
// Decoupled weight decay (PyTorch AdamW): p -= lr*wd*p; p -= lr * mhat / (sqrt(vhat) + eps)
void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  const AdamW& hp, bool decay);

}  // namespace rt::ops
