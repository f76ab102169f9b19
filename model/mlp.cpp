#include "model/mlp.h"

#include "kernels/ops.h"

namespace rt {

MlpLayer::MlpLayer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params)
    : C_(cfg.d_model), F_(cfg.mlp_hidden) {
  w_gate_up = params.add(prefix + ".w_gate_up", {2 * F_, C_}, true);
  w_down = params.add(prefix + ".w_down", {C_, F_}, true);
}

void MlpLayer::forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  gate_up_ = arena.alloc({T, 2 * F_});
  act_ = arena.alloc({T, F_});
  ops::linear_forward(gate_up_, x, ctx.params.matmul_weight(w_gate_up));
  ops::swiglu_forward(act_, gate_up_);
  if (y.defined()) ops::linear_forward(y, act_, ctx.params.matmul_weight(w_down));
}

void MlpLayer::backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  Tensor dact = arena.alloc({T, F_}), dgate_up = arena.alloc({T, 2 * F_});
  ops::linear_backward(dact, p.grad(w_down), dy, act_, p.matmul_weight(w_down), false);
  ops::swiglu_backward(dgate_up, dact, gate_up_);
  ops::linear_backward(dx, p.grad(w_gate_up), dgate_up, x, p.matmul_weight(w_gate_up), false);
}

}  // namespace rt
