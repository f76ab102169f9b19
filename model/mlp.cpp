#include "model/mlp.h"

#include "kernels/ops.h"

namespace rt {

MlpLayer::MlpLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params)
    : C_(cfg.d_model),
      F_(cfg.mlp_hidden),
      U_(cfg.mlp_activation == MlpActivation::SwiGlu ? 2 * F_ : F_),
      swiglu_(cfg.mlp_activation == MlpActivation::SwiGlu) {
  w_in = params.add(prefix + (swiglu_ ? ".w_gate_up" : ".w_up"), {U_, C_}, true);
  w_down = params.add(prefix + ".w_down", {C_, F_}, true);
}

void MlpLayer::forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  in_ = arena.alloc({T, U_});
  act_ = arena.alloc({T, F_});
  ops::linear_forward(in_, x, ctx.params.matmul_weight(w_in));
  if (swiglu_)
    ops::swiglu_forward(act_, in_);
  else
    ops::relu2_forward(act_, in_);
  if (y.defined()) ops::linear_forward(y, act_, ctx.params.matmul_weight(w_down));
}

void MlpLayer::backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  Tensor dact = arena.alloc({T, F_}), din = arena.alloc({T, U_});
  ops::linear_backward(dact, p.grad(w_down), dy, act_, p.matmul_weight(w_down), false);
  if (swiglu_)
    ops::swiglu_backward(din, dact, in_);
  else
    ops::relu2_backward(din, dact, in_);
  ops::linear_backward(dx, p.grad(w_in), din, x, p.matmul_weight(w_in), false);
}

}  // namespace rt
