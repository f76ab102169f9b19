// AdamW over a ParameterSet (f32 master weights and moments, one flat buffer each), the
// learning-rate schedule, and the global gradient norm with clipping.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/tensor.h"
#include "model/params.h"
#include "trainer/recipe.h"

namespace rt {

// Learning rate of a 0-based step: linear warmup over warmup_steps (from lr/warmup to lr),
// then cosine or linear decay to min_lr_ratio * lr at the last step, or constant.
double learning_rate(const OptimSection& optim, const ScheduleSection& schedule,
                     int64_t total_steps, int64_t step);

class AdamWOptimizer {
 public:
  AdamWOptimizer(const ParameterSet& params, const OptimSection& optim);

  // One update with the gradients in params.flat_grads() (already reduced and scaled).
  // step is 0-based; the bias correction uses step + 1.
  void update(ParameterSet& params, double lr, int64_t step);

  void move_to(Device device);     // with the parameters (ParameterSet::move_to)
  Tensor m() const { return m_; }  // first moments, laid out like the flat parameters
  Tensor v() const { return v_; }  // second moments

 private:
  OptimSection optim_;
  Tensor m_, v_;
};

// "" when the parameters and both AdamW moments are all finite; else the first tensor that is
// not, e.g. "parameter 'layers.0.attn.wq'" or "AdamW moment v of 'embed.weight'". One pass
// over each flat buffer (ops::all_finite) when everything is finite.
std::string first_non_finite(const ParameterSet& params, const Tensor& m, const Tensor& v);

// sqrt(sum of squared gradients) over the flat gradient buffer (deterministic).
double grad_norm(const ParameterSet& params);
// Scales the gradients so that their norm is at most max_norm (no-op when max_norm <= 0).
// Returns the factor applied.
double clip_grad_norm(ParameterSet& params, double norm, double max_norm);

}  // namespace rt
