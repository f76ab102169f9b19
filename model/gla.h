// Gated Linear Attention (Yang et al.), H heads of dk keys and dv values.
//   x [T, C] -> q, k [T, H, dk] = x Wq^T, x Wk^T;  v [T, H, dv] = x Wv^T;  gate [T, H*dv] = x Wg^T
//   g [T, H, dk] = logsigmoid((x W1^T) W2^T + b) / 16        (low-rank gate: rank 16)
//   o [T, H, dv]: S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = dk^-1/2 * S_t^T q_t
//                 (the GLR kernel; state passing across the sp group)
//   y [T, C] = (RMSNorm_head(o) * swish(gate)) Wo^T
// Parameters: wq, wk [H*dk, C], wv, wg [H*dv, C], w_gate1 [16, C], w_gate2 [H*dk, 16],
// b_gate [H*dk], norm [dv] (shared by the heads), wo [C, H*dv].
#pragma once

#include <cmath>

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
  // The recurrent state (docs/DESIGN.md §9).
  bool decodes() const override { return true; }
  std::unique_ptr<DecodeState> decode_state(int64_t max_len) const override;
  void decode(const Tensor& y, const Tensor& x, int64_t pos, DecodeState* state,
              const LayerContext& ctx, Arena& arena) override;
  int64_t saved_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t forward_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t backward_floats(int64_t T, const SequenceLayout& layout) const override;
  double forward_flops_per_token(int64_t seq_len) const override;
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override;

  int wq, wk, wv, wg, w_gate1, w_gate2, b_gate, norm, wo;  // parameter ids

 private:
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(dk_)); }
  // q, k, v, the output gate and the decay g from x [T, C] (low, gate_pre: the low-rank
  // gate's intermediates).
  void project_in(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& gate,
                  const Tensor& low, const Tensor& gate_pre, const Tensor& g, const Tensor& x,
                  const ParameterSet& p) const;
  // From the recurrence's o [T, H, dv]: the per-head norm, the swish gate and wo into y [T, C]
  // (skipped when undefined).
  void project_out(const Tensor& y, const Tensor& o, const Tensor& gate, const Tensor& normed,
                   const Tensor& rstd, const Tensor& gated, const ParameterSet& p) const;

  int64_t C_, H_, dk_, dv_, chunk_;
  float eps_;
  // Saved by forward.
  Tensor q_, k_, v_, gate_, low_, gate_pre_, g_, o_, normed_, rstd_, gated_;
  GlrSaved glr_;
};

}  // namespace rt
