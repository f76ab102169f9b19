// The MLP ('-'), in one of two forms (model.mlp_activation):
//   swiglu (Llama):   x [T, C] -> gate_up [T, 2F] = x W_gate_up^T -> act [T, F] = silu(gate) * up
//   relu2 (NemotronH): x [T, C] -> up [T, F] = x W_up^T -> act [T, F] = max(up, 0)^2
//   y [T, C] = act W_down^T
// Parameters: w_gate_up [2F, C] (gate rows first) or w_up [F, C]; w_down [C, F].
#pragma once

#include "model/layer.h"

namespace rt {

class MlpLayer final : public Layer {
 public:
  MlpLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params);
  void forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) override;
  void backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const LayerContext& ctx,
                Arena& arena) override;
  bool decodes() const override { return true; }  // row by row, no state
  void decode(const Tensor& y, const Tensor& x, int64_t, DecodeState*, const LayerContext& ctx,
              Arena& arena) override {
    forward(y, x, ctx, arena);
  }
  int64_t saved_floats(int64_t T, const SequenceLayout&) const override { return T * (U_ + F_); }
  int64_t forward_floats(int64_t, const SequenceLayout&) const override { return 0; }
  int64_t backward_floats(int64_t T, const SequenceLayout&) const override { return T * (U_ + F_); }
  double forward_flops_per_token(int64_t) const override { return 2.0 * C_ * (U_ + F_); }
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override {
    init_param_normal(params, w_in, std, seed);
    init_param_normal(params, w_down, residual_std, seed);
  }

  int w_in, w_down;  // parameter ids: w_in is w_gate_up (swiglu) or w_up (relu2)

 private:
  int64_t C_, F_, U_;  // U_: the input projection's width, 2F (swiglu) or F (relu2)
  bool swiglu_;
  Tensor in_, act_;  // saved by forward: gate_up or up, and act
};

}  // namespace rt
