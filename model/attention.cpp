#include "model/attention.h"

#include "kernels/ops.h"
#include "parallel/ring_attention.h"

namespace rt {

AttentionLayer::AttentionLayer(const std::string& prefix, const ModelConfig& cfg,
                               ParameterSet& params)
    : C_(cfg.d_model), H_(cfg.heads), Hkv_(cfg.kv_heads), D_(cfg.head_dim), rope_(cfg.rope) {
  wq = params.add(prefix + ".wq", {H_ * D_, C_}, true);
  wk = params.add(prefix + ".wk", {Hkv_ * D_, C_}, true);
  wv = params.add(prefix + ".wv", {Hkv_ * D_, C_}, true);
  wo = params.add(prefix + ".wo", {C_, H_ * D_}, true);
  if (cfg.attention_bias) {
    bq = params.add(prefix + ".bq", {H_ * D_}, false);
    bk = params.add(prefix + ".bk", {Hkv_ * D_}, false);
    bv = params.add(prefix + ".bv", {Hkv_ * D_}, false);
  }
}

void AttentionLayer::project_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& x,
                                 const LayerContext& ctx) const {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  ops::linear_forward(q.view({T, H_ * D_}), x, p.matmul_weight(wq));
  ops::linear_forward(k.view({T, Hkv_ * D_}), x, p.matmul_weight(wk));
  ops::linear_forward(v.view({T, Hkv_ * D_}), x, p.matmul_weight(wv));
  if (bq >= 0) {
    ops::add_bias_forward(q.view({T, H_ * D_}), p.value(bq));
    ops::add_bias_forward(k.view({T, Hkv_ * D_}), p.value(bk));
    ops::add_bias_forward(v.view({T, Hkv_ * D_}), p.value(bv));
  }
  if (!rope_) return;
  ops::rope_forward(q, ctx.rope);
  ops::rope_forward(k, ctx.rope);
}

void AttentionLayer::forward(const Tensor& y, const Tensor& x, const LayerContext& ctx,
                             Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  q_ = arena.alloc({T, H_, D_});
  k_ = arena.alloc({T, Hkv_, D_});
  v_ = arena.alloc({T, Hkv_, D_});
  out_ = arena.alloc({T, H_, D_});
  lse_ = arena.alloc({T, H_});
  project_qkv(q_, k_, v_, x, ctx);
  ring_attention_forward(ctx.seq, q_, k_, v_, out_, lse_, arena);
  if (y.defined()) ops::linear_forward(y, out_.view({T, H_ * D_}), p.matmul_weight(wo));
}

void AttentionLayer::backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                              const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  Tensor dout = arena.alloc({T, H_, D_});
  Tensor dq = arena.alloc({T, H_, D_}), dk = arena.alloc({T, Hkv_, D_}),
         dv = arena.alloc({T, Hkv_, D_});
  ops::linear_backward(dout.view({T, H_ * D_}), p.grad(wo), dy, out_.view({T, H_ * D_}),
                       p.matmul_weight(wo), false);
  ring_attention_backward(ctx.seq, q_, k_, v_, out_, dout, lse_, dq, dk, dv, arena);
  // q and k were rotated after projection: their gradients rotate back before it.
  if (rope_) {
    ops::rope_backward(dq, ctx.rope);
    ops::rope_backward(dk, ctx.rope);
  }
  if (bq >= 0) {
    ops::add_bias_backward(p.grad(bq), dq.view({T, H_ * D_}));
    ops::add_bias_backward(p.grad(bk), dk.view({T, Hkv_ * D_}));
    ops::add_bias_backward(p.grad(bv), dv.view({T, Hkv_ * D_}));
  }
  ops::linear_backward(dx, p.grad(wq), dq.view({T, H_ * D_}), x, p.matmul_weight(wq), false);
  ops::linear_backward(dx, p.grad(wk), dk.view({T, Hkv_ * D_}), x, p.matmul_weight(wk), true);
  ops::linear_backward(dx, p.grad(wv), dv.view({T, Hkv_ * D_}), x, p.matmul_weight(wv), true);
}

namespace {
struct KvCache final : DecodeState {
  Tensor k, v;  // [max_len, Hkv, D]
  int64_t len = 0;
};
}  // namespace

std::unique_ptr<DecodeState> AttentionLayer::decode_state(int64_t max_len) const {
  auto cache = std::make_unique<KvCache>();
  cache->k = Tensor::empty({max_len, Hkv_, D_});
  cache->v = Tensor::empty({max_len, Hkv_, D_});
  return cache;
}

// The forward for the next T tokens, their keys and values appended to the cache: each new
// query attends to the cached keys at or before it.
void AttentionLayer::decode(const Tensor& y, const Tensor& x, int64_t pos, DecodeState* state,
                            const LayerContext& ctx, Arena& arena) {
  auto& cache = static_cast<KvCache&>(*state);
  const int64_t T = x.size(0);
  RT_CHECK(pos == cache.len && pos + T <= cache.k.size(0), "decode of ", T, " at ", pos,
           " of a cache of ", cache.len);
  const ParameterSet& p = ctx.params;
  Tensor q = arena.alloc({T, H_, D_}), out = arena.alloc({T, H_, D_}), lse = arena.alloc({T, H_});
  project_qkv(q, cache.k.rows(pos, T), cache.v.rows(pos, T), x, ctx);
  cache.len = pos + T;
  ops::attention_block_forward(out, lse, q, cache.k.rows(0, cache.len), cache.v.rows(0, cache.len),
                               pos, 0, ops::Mask::Causal);
  ops::linear_forward(y, out.view({T, H_ * D_}), p.matmul_weight(wo));
}

int64_t AttentionLayer::saved_floats(int64_t T, const SequenceLayout&) const {
  return T * (2 * H_ * D_ + 2 * Hkv_ * D_ + H_);  // q, out, k, v, lse
}

int64_t AttentionLayer::forward_floats(int64_t T, const SequenceLayout& layout) const {
  return ring_attention_forward_floats(layout, T, H_, Hkv_, D_);
}

int64_t AttentionLayer::backward_floats(int64_t T, const SequenceLayout& layout) const {
  return T * (2 * H_ * D_ + 2 * Hkv_ * D_) +  // dout, dq, dk, dv
         ring_attention_backward_floats(layout, T, H_, Hkv_, D_);
}

double AttentionLayer::forward_flops_per_token(int64_t seq_len) const {
  const double projections = 2.0 * C_ * (2 * H_ * D_ + 2 * Hkv_ * D_);
  return projections + score_flops_per_token(seq_len);
}

double AttentionLayer::score_flops_per_token(int64_t seq_len) const {
  // Causal: a token attends to (seq_len + 1) / 2 keys on average; QK^T and PV are 2 FLOPs
  // per multiply-add each.
  return 4.0 * H_ * D_ * (seq_len + 1) / 2.0;
}

void AttentionLayer::init_parameters(const ParameterSet& params, uint64_t seed, double std,
                                     double residual_std) const {
  for (int id : {wq, wk, wv}) init_param_normal(params, id, std, seed);
  init_param_normal(params, wo, residual_std, seed);
  for (int id : {bq, bk, bv})
    if (id >= 0) ops::fill(params.value(id), 0.0f);
}

}  // namespace rt
