#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"
#include "model/layer_registry.h"

namespace rt {

Model::Model(const ModelConfig& config, bool allocate) : config_(config) {
  const int64_t V = config_.vocab_size, C = config_.d_model;
  embed_ = params_.add("embed.weight", {V, C}, true);
  for (size_t i = 0; i < config_.pattern.size(); ++i) {
    const std::string prefix = "layers." + std::to_string(i);
    Block b;
    b.norm = params_.add(prefix + ".norm.weight", {C}, false);
    const LayerKind* kind = layer_kind(config_.pattern[i]);
    RT_CHECK(kind, "pattern symbol '", config_.pattern[i], "' reached the model");
    b.layer = kind->make(cat(prefix, ".", kind->scope), config_, params_);
    blocks_.push_back(std::move(b));
  }
  final_norm_ = params_.add("final_norm.weight", {C}, false);
  if (!config_.tied_embeddings) lm_head_ = params_.add("lm_head.weight", {V, C}, true);
  if (allocate) params_.allocate();
}

void Model::init_weights(uint64_t seed) {
  const double residual_std = config_.init_std / std::sqrt(static_cast<double>(blocks_.size()));
  init_param_normal(params_, embed_, config_.init_std, seed);
  if (lm_head_ >= 0) init_param_normal(params_, lm_head_, config_.init_std, seed);
  ops::fill(params_.value(final_norm_), 1.0f);
  for (const Block& b : blocks_) {
    ops::fill(params_.value(b.norm), 1.0f);
    b.layer->init_parameters(params_, seed, config_.init_std, residual_std);
  }
}

void Model::embed(const Batch& batch, const Tensor& h0, const Tensor& rope, const Tensor& y) {
  const bool bf16 = h0.dtype() == DType::BF16;
  ops::embedding_forward(bf16 ? y : h0, batch.tokens, params_.value(embed_));
  if (bf16) ops::to_bf16(h0, y);
  // Every rank's table is for the whole sequence's length (dynamic scaling depends on it).
  const int64_t seq_len = batch.seq.layout ? batch.seq.layout->seq_len : batch.tokens.size(0);
  ops::rope_table(rope, batch.positions, config_.rope_frequencies(seq_len));
}

void Model::block_forward(size_t i, const Tensor& h_in, const Tensor& h_out, const Tensor& xn,
                          const Tensor& rstd, const Tensor& y, const LayerContext& ctx,
                          Arena& arena) {
  ops::rmsnorm_forward(xn, rstd, h_in, params_.value(blocks_[i].norm),
                       static_cast<float>(config_.norm_eps));
  if (!h_out.defined()) {
    blocks_[i].layer->forward(Tensor(), xn, ctx, arena);
  } else if (h_out.dtype() == DType::BF16) {
    blocks_[i].layer->forward(y, xn, ctx, arena);
    ops::add_bf16(h_out, y, h_in);  // the residual connection, rounded into the stream
  } else {
    blocks_[i].layer->forward(h_out, xn, ctx, arena);
    ops::accumulate(h_out, h_in);  // the residual connection
  }
}

double Model::forward_backward(const Batch& batch, float grad_scale, bool recompute, Arena& arena) {
  const int64_t T = batch.tokens.size(0), C = config_.d_model, L = blocks_.size();
  const Arena::Mark start = arena.mark();
  // Everything that lives through the whole step comes first, below the per-layer marks.
  Tensor h = arena.alloc({L + 1, T, C}, stream_dtype());
  Tensor y = stream_dtype() == DType::BF16 ? arena.alloc({T, C}) : Tensor();
  Tensor rope = arena.alloc({T, config_.head_dim / 2, 2});
  Tensor hn = arena.alloc({T, C}), rstd_final = arena.alloc({T});
  Tensor dhn = arena.alloc({T, C}), dh = arena.alloc({T, C});
  auto stream = [&](int64_t i) { return h.rows(i, 1).view({T, C}); };
  embed(batch, stream(0), rope, y);
  const LayerContext ctx{config_, params_, rope, batch.seq};

  std::vector<Arena::Mark> marks(L);
  std::vector<Tensor> xn(L), rstd(L);
  for (int64_t i = 0; i < L; ++i) {
    marks[i] = arena.mark();
    xn[i] = arena.alloc({T, C});
    rstd[i] = arena.alloc({T});
    block_forward(i, stream(i), stream(i + 1), xn[i], rstd[i], y, ctx, arena);
    if (recompute) arena.release(marks[i]);
  }

  const Tensor& final_w = params_.value(final_norm_);
  ops::rmsnorm_forward(hn, rstd_final, stream(L), final_w, static_cast<float>(config_.norm_eps));
  const double loss = ops::lm_head_loss(hn, params_.value(head()), batch.targets, dhn,
                                        params_.grad(head()), grad_scale);
  ops::fill(dh, 0.0f);
  ops::rmsnorm_backward(dh, params_.grad(final_norm_), dhn, stream(L), final_w, rstd_final);

  for (int64_t i = L - 1; i >= 0; --i) {
    if (recompute) {
      marks[i] = arena.mark();
      xn[i] = arena.alloc({T, C});
      rstd[i] = arena.alloc({T});
      block_forward(i, stream(i), Tensor(), xn[i], rstd[i], y, ctx, arena);
    }
    Tensor dxn = arena.alloc({T, C});
    blocks_[i].layer->backward(dxn, dh, xn[i], ctx, arena);
    // dh holds d/dh_{i+1}; the residual path passes it through, the norm adds its part.
    ops::rmsnorm_backward(dh, params_.grad(blocks_[i].norm), dxn, stream(i),
                          params_.value(blocks_[i].norm), rstd[i]);
    arena.release(marks[i]);
  }
  ops::embedding_backward(params_.grad(embed_), batch.tokens, dh);
  arena.release(start);
  return loss;
}

Tensor Model::forward_hidden(const Batch& batch, Arena& arena) {
  const int64_t T = batch.tokens.size(0), C = config_.d_model;
  Tensor hn = arena.alloc({T, C});
  const Arena::Mark mark = arena.mark();
  Tensor h_in = arena.alloc({T, C}, stream_dtype()), h_out = arena.alloc({T, C}, stream_dtype());
  Tensor y = stream_dtype() == DType::BF16 ? arena.alloc({T, C}) : Tensor();
  Tensor rope = arena.alloc({T, config_.head_dim / 2, 2});
  embed(batch, h_in, rope, y);
  const LayerContext ctx{config_, params_, rope, batch.seq};
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Arena::Mark layer = arena.mark();
    block_forward(i, h_in, h_out, arena.alloc({T, C}), arena.alloc({T}), y, ctx, arena);
    arena.release(layer);
    std::swap(h_in, h_out);
  }
  Tensor rstd = arena.alloc({T});
  ops::rmsnorm_forward(hn, rstd, h_in, params_.value(final_norm_),
                       static_cast<float>(config_.norm_eps));
  arena.release(mark);  // hn was allocated before the mark and stays
  return hn;
}

double Model::forward_loss(const Batch& batch, Arena& arena, const Tensor& token_losses) {
  const Arena::Mark start = arena.mark();
  const Tensor hn = forward_hidden(batch, arena);
  const double loss = ops::lm_head_loss(hn, params_.value(head()), batch.targets, Tensor(),
                                        Tensor(), 1.0f, token_losses);
  arena.release(start);
  return loss;
}

void Model::predict(const Batch& batch, Arena& arena, const Tensor& argmax) {
  const Arena::Mark start = arena.mark();
  ops::lm_head_argmax(argmax, forward_hidden(batch, arena), params_.value(head()));
  arena.release(start);
}

void Model::logits(const Batch& batch, Arena& arena, const Tensor& out) {
  const Arena::Mark start = arena.mark();
  ops::linear_forward(out, forward_hidden(batch, arena), params_.value(head()));
  arena.release(start);
}

std::vector<std::unique_ptr<DecodeState>> Model::decode_states(int64_t max_len) const {
  std::vector<std::unique_ptr<DecodeState>> states;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    RT_CHECK(blocks_[i].layer->decodes(), "layer kind '", config_.pattern[i], "' cannot generate");
    states.push_back(blocks_[i].layer->decode_state(max_len));
  }
  return states;
}

void Model::decode_step(const std::vector<int32_t>& tokens, int64_t pos, int64_t rope_len,
                        std::vector<std::unique_ptr<DecodeState>>& states, Arena& arena,
                        const Tensor& logits) {
  const Arena::Mark start = arena.mark();
  const int64_t C = config_.d_model, T = static_cast<int64_t>(tokens.size());
  std::vector<int32_t> ids(tokens), positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) positions[t] = static_cast<int32_t>(pos + t);
  const Tensor tok = Tensor::wrap(ids.data(), {T}, DType::I32),
               position = Tensor::wrap(positions.data(), {T}, DType::I32);
  Tensor h = arena.alloc({T, C}), xn = arena.alloc({T, C}), y = arena.alloc({T, C}),
         rstd = arena.alloc({T}), rope = arena.alloc({T, config_.head_dim / 2, 2});
  ops::embedding_forward(h, tok, params_.value(embed_));
  ops::rope_table(rope, position, config_.rope_frequencies(rope_len));
  const SequenceLayout run = SequenceLayout::zigzag(T, 1, 0);
  const SequenceContext seq{&run, 1, nullptr};
  const LayerContext ctx{config_, params_, rope, seq};
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Arena::Mark layer = arena.mark();
    ops::rmsnorm_forward(xn, rstd, h, params_.value(blocks_[i].norm),
                         static_cast<float>(config_.norm_eps));
    blocks_[i].layer->decode(y, xn, pos, states[i].get(), ctx, arena);
    ops::add(h, h, y);
    arena.release(layer);
  }
  const Tensor last = h.rows(T - 1, 1), last_n = xn.rows(T - 1, 1);
  ops::rmsnorm_forward(last_n, rstd.rows(0, 1), last, params_.value(final_norm_),
                       static_cast<float>(config_.norm_eps));
  ops::linear_forward(logits.view({1, config_.vocab_size}), last_n, params_.value(head()));
  arena.release(start);
}

int64_t Model::num_params() const {
  int64_t n = 0;
  for (const Parameter& p : params_.all()) n += p.shape.numel();
  return n;
}

double Model::flops_per_token(int64_t seq_len) const {
  double forward = 2.0 * config_.vocab_size * config_.d_model;  // LM head
  for (const Block& b : blocks_) forward += b.layer->forward_flops_per_token(seq_len);
  return 3.0 * forward;
}

double Model::attention_flops_per_token(int64_t seq_len) const {
  double forward = 0;
  for (const Block& b : blocks_) forward += b.layer->score_flops_per_token(seq_len);
  return 3.0 * forward;
}

int64_t Model::activation_bytes(int64_t n_seqs, const SequenceLayout& layout,
                                bool recompute) const {
  const int64_t T = n_seqs * layout.local_len, C = config_.d_model, L = blocks_.size();
  // Mirrors forward_backward: the step-long tensors (the residual stream h in 4 bytes, or in 2
  // and then an f32 layer output beside it), then per layer what forward keeps (xn, rstd, the
  // layer's own) and what its forward and backward use on top while they run.
  const bool bf16 = stream_dtype() == DType::BF16;
  const int64_t stream_bytes = bf16 ? 2 * (L + 1) * T * C + 4 * T * C : 4 * (L + 1) * T * C;
  const int64_t base = T * config_.head_dim + 3 * T * C + T;
  // Backward of layer i runs with layers 0..i still kept (no recompute) or alone (recompute).
  int64_t kept_below = 0, peak = 0;
  for (const Block& b : blocks_) {
    const int64_t saved = T * C + T + b.layer->saved_floats(T, layout);
    const int64_t forward = b.layer->forward_floats(T, layout);
    const int64_t backward = T * C + b.layer->backward_floats(T, layout);
    kept_below = recompute ? saved : kept_below + saved;
    peak = std::max({peak, kept_below + forward, kept_below + backward});
  }
  return stream_bytes + 4 * (base + peak);
}

}  // namespace rt
