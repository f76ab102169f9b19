// SwiGLU MLP (Llama).
//   x [T, C] -> gate_up [T, 2F] = x W_gate_up^T -> act [T, F] = silu(gate) * up
//   y [T, C] = act W_down^T
// Parameters: w_gate_up [2F, C] (gate rows first), w_down [C, F].
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
  int64_t saved_floats(int64_t T, const SequenceLayout&) const override { return T * 3 * F_; }
  int64_t forward_floats(int64_t, const SequenceLayout&) const override { return 0; }
  int64_t backward_floats(int64_t T, const SequenceLayout&) const override { return T * 3 * F_; }
  double forward_flops_per_token(int64_t) const override { return 2.0 * 3 * C_ * F_; }
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override {
    init_param_normal(params, w_gate_up, std, seed);
    init_param_normal(params, w_down, residual_std, seed);
  }

  int w_gate_up, w_down;  // parameter ids

 private:
  int64_t C_, F_;
  Tensor gate_up_, act_;  // saved by forward
};

}  // namespace rt
