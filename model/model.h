// The hybrid stack built from the pattern string (Megatron-LM's convention):
//   h0 = embed(tokens)
//   for each symbol: h += Layer(RMSNorm(h))            ('*' attention, '-' SwiGLU MLP)
//   loss = CE(LMHead(RMSNorm(h)), targets)             (in token blocks, kernels/ops.h)
// The LM head is the embedding (tied) or its own matrix. With recompute, forward keeps only
// each layer's input h and backward recomputes the layer before differentiating it.
// Under run.precision: bf16 (params().keeps_bf16_copy()) the residual stream h is stored in
// bf16: each layer's f32 output is added to it and rounded (a straight-through rounding for the
// gradient, which stays f32), and the norms read it; the linear layers multiply with the bf16
// weight copy.
#pragma once

#include <memory>
#include <vector>

#include "kernels/arena.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/layer.h"
#include "model/params.h"

namespace rt {

class Model {
 public:
  // config must be resolved and validated. Without `allocate` only the shapes exist (a dry run
  // of a model larger than this machine); params().allocate() adds the storage later.
  explicit Model(const ModelConfig& config, bool allocate = true);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  ParameterSet& params() { return params_; }
  const ParameterSet& params() const { return params_; }

  // GPT-2 / Llama init: N(0, init_std) for matrices, the residual output projections (wo,
  // w_down) scaled by 1/sqrt(layers); norm weights 1. A function of the seed only.
  void init_weights(uint64_t seed);

  // One micro-batch: returns the sum of its token losses; parameter gradients of
  // grad_scale * (that sum) are added to params().flat_grads(). The arena is left as found.
  double forward_backward(const Batch& batch, float grad_scale, bool recompute, Arena& arena);
  // Loss sum only (validation); token_losses [T] receives each token's loss when defined.
  double forward_loss(const Batch& batch, Arena& arena, const Tensor& token_losses = Tensor());
  // The most likely next token at every position, i32 [T] (evaluation, teacher forced).
  void predict(const Batch& batch, Arena& arena, const Tensor& argmax);
  // The next-token logits at every position, f32 [T, vocab_size].
  void logits(const Batch& batch, Arena& arena, const Tensor& out);

  // Generation: the layers' states for a sequence of up to max_len tokens (the K/V caches,
  // the recurrent and conv states), then the tokens in order, a run of them per call (the
  // prompt at once, then one at a time) at positions pos, pos + 1, ...: logits [vocab_size]
  // of the token after the last. rope_len is the sequence length the RoPE table is for
  // (dynamic scaling; transformers uses max(prompt, pos + 1)).
  std::vector<std::unique_ptr<DecodeState>> decode_states(int64_t max_len) const;
  void decode_step(const std::vector<int32_t>& tokens, int64_t pos, int64_t rope_len,
                   std::vector<std::unique_ptr<DecodeState>>& states, Arena& arena,
                   const Tensor& logits);

  int64_t num_params() const;
  // Model FLOPs per trained token (forward + backward = 3x forward), recompute not counted,
  // and the part of them in attention scores (QK^T and PV over the causal context).
  double flops_per_token(int64_t seq_len) const;
  double attention_flops_per_token(int64_t seq_len) const;
  // Arena bytes one forward_backward of n_seqs sequences laid out by `layout` peaks at (the
  // dry run's estimate; the tests hold it to the measured peak).
  int64_t activation_bytes(int64_t n_seqs, const SequenceLayout& layout, bool recompute) const;

 private:
  struct Block {
    int norm;  // parameter id of the pre-norm weight
    std::unique_ptr<Layer> layer;
  };
  // Fills h[0] and the rope table; y [T, C] f32 is the embedding's scratch when h0 is bf16.
  void embed(const Batch& batch, const Tensor& h0, const Tensor& rope, const Tensor& y);
  DType stream_dtype() const { return params_.keeps_bf16_copy() ? DType::BF16 : DType::F32; }
  // The final hidden states hn [T, C] of a forward pass without gradients (in the arena).
  Tensor forward_hidden(const Batch& batch, Arena& arena);
  // h_out = h_in + layer(norm(h_in)); with a bf16 stream the layer writes into y [T, C] f32
  // first. An undefined h_out runs the layer for its saved activations only (recompute).
  void block_forward(size_t i, const Tensor& h_in, const Tensor& h_out, const Tensor& xn,
                     const Tensor& rstd, const Tensor& y, const LayerContext& ctx, Arena& arena);
  int head() const { return config_.tied_embeddings ? embed_ : lm_head_; }

  ModelConfig config_;
  ParameterSet params_;
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;
  std::vector<Block> blocks_;
};

}  // namespace rt
