#include "model/gla.h"

#include <cmath>

#include "kernels/ops.h"

namespace rt {

GlaLayer::GlaLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params)
    : C_(cfg.d_model),
      H_(cfg.gla_heads),
      dk_(cfg.gla_key_dim() / cfg.gla_heads),
      dv_(cfg.gla_value_dim() / cfg.gla_heads),
      chunk_(cfg.glr_chunk),
      eps_(static_cast<float>(cfg.norm_eps)) {
  const int64_t K = H_ * dk_, V = H_ * dv_;
  wq = params.add(prefix + ".wq", {K, C_}, true);
  wk = params.add(prefix + ".wk", {K, C_}, true);
  wv = params.add(prefix + ".wv", {V, C_}, true);
  wg = params.add(prefix + ".wg", {V, C_}, true);
  w_gate1 = params.add(prefix + ".w_gate1", {kGateRank, C_}, true);
  w_gate2 = params.add(prefix + ".w_gate2", {K, kGateRank}, true);
  b_gate = params.add(prefix + ".b_gate", {K}, false);
  norm = params.add(prefix + ".norm", {dv_}, false);
  wo = params.add(prefix + ".wo", {C_, V}, true);
}

void GlaLayer::forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0), K = H_ * dk_, V = H_ * dv_;
  const ParameterSet& p = ctx.params;
  q_ = arena.alloc({T, H_, dk_});
  k_ = arena.alloc({T, H_, dk_});
  v_ = arena.alloc({T, H_, dv_});
  gate_ = arena.alloc({T, V});
  low_ = arena.alloc({T, kGateRank});
  gate_pre_ = arena.alloc({T, K});
  g_ = arena.alloc({T, H_, dk_});
  o_ = arena.alloc({T, H_, dv_});
  normed_ = arena.alloc({T, V});
  rstd_ = arena.alloc({T * H_});
  gated_ = arena.alloc({T, V});
  project_in(q_, k_, v_, gate_, low_, gate_pre_, g_, x, p);
  glr_sequences_forward(ctx.seq, q_, k_, v_, g_, scale(), chunk_, o_, glr_, arena);
  project_out(y, o_, gate_, normed_, rstd_, gated_, p);
}

void GlaLayer::project_in(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& gate,
                          const Tensor& low, const Tensor& gate_pre, const Tensor& g,
                          const Tensor& x, const ParameterSet& p) const {
  const int64_t T = x.size(0), K = H_ * dk_, V = H_ * dv_;
  ops::linear_forward(q.view({T, K}), x, p.matmul_weight(wq));
  ops::linear_forward(k.view({T, K}), x, p.matmul_weight(wk));
  ops::linear_forward(v.view({T, V}), x, p.matmul_weight(wv));
  ops::linear_forward(gate, x, p.matmul_weight(wg));
  ops::linear_forward(low, x, p.matmul_weight(w_gate1));
  ops::linear_forward(gate_pre, low, p.matmul_weight(w_gate2));
  ops::logsigmoid_forward(g.view({T, K}), gate_pre, p.value(b_gate), 1.0f / kGateNormalizer);
}

void GlaLayer::project_out(const Tensor& y, const Tensor& o, const Tensor& gate,
                           const Tensor& normed, const Tensor& rstd, const Tensor& gated,
                           const ParameterSet& p) const {
  const int64_t T = o.size(0);
  // RMSNorm over each head's dv values (one weight for all heads), then the swish gate.
  ops::rmsnorm_forward(normed.view({T * H_, dv_}), rstd, o.view({T * H_, dv_}), p.value(norm),
                       eps_);
  ops::silu_gate_forward(gated, normed, gate);
  if (y.defined()) ops::linear_forward(y, gated, p.matmul_weight(wo));
}

namespace {
struct GlaDecodeState final : DecodeState {
  Tensor state;  // [H, dk, dv]
};
}  // namespace

std::unique_ptr<DecodeState> GlaLayer::decode_state(int64_t) const {
  auto s = std::make_unique<GlaDecodeState>();
  s->state = Tensor::zeros({H_, dk_, dv_});
  return s;
}

// The forward for the next T tokens, the recurrence starting from the carried state.
void GlaLayer::decode(const Tensor& y, const Tensor& x, int64_t, DecodeState* state,
                      const LayerContext& ctx, Arena& arena) {
  auto& s = static_cast<GlaDecodeState&>(*state);
  const int64_t T = x.size(0), K = H_ * dk_, V = H_ * dv_;
  Tensor q = arena.alloc({T, H_, dk_}), k = arena.alloc({T, H_, dk_}),
         v = arena.alloc({T, H_, dv_}), gate = arena.alloc({T, V}), g = arena.alloc({T, H_, dk_}),
         o = arena.alloc({T, H_, dv_}), h_final = arena.alloc({H_, dk_, dv_});
  project_in(q, k, v, gate, arena.alloc({T, kGateRank}), arena.alloc({T, K}), g, x, ctx.params);
  ops::glr_forward(o, h_final, Tensor(), q, k, v, g, s.state, scale(), chunk_);
  copy_tensor(s.state, h_final);
  project_out(y, o, gate, arena.alloc({T, V}), arena.alloc({T * H_}), arena.alloc({T, V}),
              ctx.params);
}

void GlaLayer::backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0), K = H_ * dk_, V = H_ * dv_;
  const ParameterSet& p = ctx.params;
  Tensor dgated = arena.alloc({T, V}), dnormed = arena.alloc({T, V}), dgate = arena.alloc({T, V});
  Tensor d_o = arena.zeros({T, H_, dv_});
  Tensor dq = arena.alloc({T, H_, dk_}), dk = arena.alloc({T, H_, dk_}),
         dv = arena.alloc({T, H_, dv_}), dg = arena.alloc({T, H_, dk_});
  Tensor dgate_pre = arena.alloc({T, K}), dlow = arena.alloc({T, kGateRank});
  ops::linear_backward(dgated, p.grad(wo), dy, gated_, p.matmul_weight(wo), false);
  ops::silu_gate_backward(dnormed, dgate, dgated, normed_, gate_);
  ops::rmsnorm_backward(d_o.view({T * H_, dv_}), p.grad(norm), dnormed.view({T * H_, dv_}),
                        o_.view({T * H_, dv_}), p.value(norm), rstd_);
  const SequenceContext& seq = ctx.seq;
  glr_sequences_backward(seq, q_, k_, v_, g_, scale(), chunk_, d_o, glr_, dq, dk, dv, dg, arena);
  ops::logsigmoid_backward(dgate_pre, p.grad(b_gate), dg.view({T, K}), gate_pre_, p.value(b_gate),
                           1.0f / kGateNormalizer);
  ops::linear_backward(dlow, p.grad(w_gate2), dgate_pre, low_, p.matmul_weight(w_gate2), false);
  ops::linear_backward(dx, p.grad(wq), dq.view({T, K}), x, p.matmul_weight(wq), false);
  ops::linear_backward(dx, p.grad(wk), dk.view({T, K}), x, p.matmul_weight(wk), true);
  ops::linear_backward(dx, p.grad(wv), dv.view({T, V}), x, p.matmul_weight(wv), true);
  ops::linear_backward(dx, p.grad(wg), dgate, x, p.matmul_weight(wg), true);
  ops::linear_backward(dx, p.grad(w_gate1), dlow, x, p.matmul_weight(w_gate1), true);
}

int64_t GlaLayer::saved_floats(int64_t T, const SequenceLayout& layout) const {
  const int64_t K = H_ * dk_, V = H_ * dv_;
  // q, k, gate_pre, g | v, gate, o, normed, gated | low | rstd | the recurrence's states
  return T * (4 * K + 5 * V + kGateRank + H_) +
         glr_sequences_saved_floats(layout, T / layout.local_len, H_, dk_, dv_, true, chunk_);
}

int64_t GlaLayer::forward_floats(int64_t T, const SequenceLayout& layout) const {
  return glr_sequences_forward_floats(layout, T / layout.local_len, H_, dk_, dv_, true);
}

int64_t GlaLayer::backward_floats(int64_t T, const SequenceLayout& layout) const {
  const int64_t K = H_ * dk_, V = H_ * dv_;
  // dgated, dnormed, dgate, d_o | dq, dk, dg, dgate_pre | dv is V | dlow
  return T * (4 * V + 4 * K + V + kGateRank) +
         glr_sequences_backward_floats(layout, T / layout.local_len, H_, dk_, dv_);
}

double GlaLayer::forward_flops_per_token(int64_t) const {
  const double K = static_cast<double>(H_ * dk_), V = static_cast<double>(H_ * dv_);
  const double projections =
      2.0 * C_ * (2 * K + 2 * V + kGateRank) + 2.0 * kGateRank * K + 2.0 * V * C_;
  // Chunked recurrence per token and head: inter-chunk (q S), state update (k^T v) and the
  // intra-chunk scores and values over on average chunk/2 earlier tokens.
  const double recurrence = H_ * (4.0 * dk_ * dv_ + 2.0 * (chunk_ / 2.0) * (dk_ + dv_));
  return projections + recurrence;
}

void GlaLayer::init_parameters(const ParameterSet& params, uint64_t seed, double std,
                               double residual_std) const {
  for (int id : {wq, wk, wv, wg, w_gate1, w_gate2}) init_param_normal(params, id, std, seed);
  init_param_normal(params, wo, residual_std, seed);
  ops::fill(params.value(b_gate), 0.0f);
  ops::fill(params.value(norm), 1.0f);
}

}  // namespace rt
