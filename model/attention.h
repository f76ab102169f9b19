// Causal self-attention with GQA and RoPE on global positions (none with model.rope: false).
//   x [T, C] -> q [T, H, D] = x Wq^T, k, v [T, Hkv, D] = x Wk^T, x Wv^T
//   q, k rotated (RoPE); o [T, H, D] = attention over each sequence (ring across the sp group)
//   y [T, C] = o Wo^T
// Parameters: wq [H*D, C], wk [Hkv*D, C], wv [Hkv*D, C], wo [C, H*D]; with
// model.attention_bias also bq [H*D], bk, bv [Hkv*D], added before the rotation.
#pragma once

#include "model/layer.h"

namespace rt {

class AttentionLayer final : public Layer {
 public:
  AttentionLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params);
  void forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) override;
  void backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const LayerContext& ctx,
                Arena& arena) override;
  // The K/V cache: keys (rotated) and values of every earlier token.
  bool decodes() const override { return true; }
  std::unique_ptr<DecodeState> decode_state(int64_t max_len) const override;
  void decode(const Tensor& y, const Tensor& x, int64_t pos, DecodeState* state,
              const LayerContext& ctx, Arena& arena) override;
  int64_t saved_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t forward_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t backward_floats(int64_t T, const SequenceLayout& layout) const override;
  double forward_flops_per_token(int64_t seq_len) const override;
  double score_flops_per_token(int64_t seq_len) const override;
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override;

  int wq, wk, wv, wo;             // parameter ids
  int bq = -1, bk = -1, bv = -1;  // -1 without model.attention_bias

 private:
  // q [T, H, D], k, v [T, Hkv, D] from x [T, C]: projections and biases, q and k rotated.
  void project_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& x,
                   const LayerContext& ctx) const;

  int64_t C_, H_, Hkv_, D_;
  bool rope_;                     // model.rope
  Tensor q_, k_, v_, out_, lse_;  // saved by forward
};

}  // namespace rt
