// Gated Linear Attention (Yang et al.), H heads of dk keys and dv values.
//   x [T, C] -> q, k [T, H, dk] = x Wq^T, x Wk^T;  v [T, H, dv] = x Wv^T;  gate [T, H*dv] = x Wg^T
//   g [T, H, dk] = logsigmoid((x W1^T) W2^T + b) / 16        (low-rank gate: rank 16)
//   o [T, H, dv]: S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = dk^-1/2 * S_t^T q_t
//                 (the GLR kernel; state passing across the sp group)
//   y [T, C] = (RMSNorm_head(o) * swish(gate)) Wo^T
// Parameters: wq, wk [H*dk, C], wv, wg [H*dv, C], w_gate1 [16, C], w_gate2 [H*dk, 16],
// b_gate [H*dk], norm [dv] (shared by the heads), wo [C, H*dv].
#pragma once

#include "model/layer.h"
#include "parallel/state_passing.h"

namespace rt {

class GlaLayer final : public Layer {
 public:
  static constexpr int64_t kGateRank = 16;
  static constexpr float kGateNormalizer = 16.0f;

  GlaLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params);
  void forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) override;
  void backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const LayerContext& ctx,
                Arena& arena) override;
  int64_t saved_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t forward_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t backward_floats(int64_t T, const SequenceLayout& layout) const override;
  double forward_flops_per_token(int64_t seq_len) const override;
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override;

  int wq, wk, wv, wg, w_gate1, w_gate2, b_gate, norm, wo;  // parameter ids

 private:
  int64_t C_, H_, dk_, dv_, chunk_;
  float eps_;
  // Saved by forward.
  Tensor q_, k_, v_, gate_, low_, gate_pre_, g_, o_, normed_, rstd_, gated_;
  GlrSaved glr_;
};

}  // namespace rt
