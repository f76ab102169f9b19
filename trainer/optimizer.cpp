#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/ops.h"

namespace rt {

double learning_rate(const OptimSection& optim, const ScheduleSection& schedule,
                     int64_t total_steps, int64_t step) {
  const double peak = optim.lr;
  if (step < schedule.warmup_steps)
    return peak * static_cast<double>(step + 1) / static_cast<double>(schedule.warmup_steps);
  if (schedule.kind == ScheduleKind::Constant) return peak;
  const double floor = schedule.min_lr_ratio * peak;
  if (schedule.kind ==
      ScheduleKind::Wsd) {  // warmup-stable-decay: linear to the floor over the last steps
    const int64_t decay_start = total_steps - schedule.decay_steps;
    if (step < decay_start) return peak;
    const double progress =
        static_cast<double>(step - decay_start + 1) / static_cast<double>(schedule.decay_steps);
    return peak + (floor - peak) * progress;
  }
  const int64_t decay_steps = total_steps - schedule.warmup_steps;
  if (decay_steps <= 1) return peak;
  const double progress =
      static_cast<double>(step - schedule.warmup_steps) / static_cast<double>(decay_steps - 1);
  if (schedule.kind == ScheduleKind::Linear) return peak + (floor - peak) * progress;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));  // cosine
}

AdamWOptimizer::AdamWOptimizer(const ParameterSet& params, const OptimSection& optim)
    : optim_(optim), m_(Tensor::zeros({params.numel()})), v_(Tensor::zeros({params.numel()})) {}

void AdamWOptimizer::move_to(Device device) {
  m_ = to_device(m_, device);
  v_ = to_device(v_, device);
}

void AdamWOptimizer::update(ParameterSet& params, double lr, int64_t step) {
  const ops::AdamW hp{static_cast<float>(lr),
                      static_cast<float>(optim_.beta1),
                      static_cast<float>(optim_.beta2),
                      static_cast<float>(optim_.eps),
                      static_cast<float>(optim_.weight_decay),
                      step + 1};
  for (const Parameter& p : params.all()) {
    const int64_t n = p.shape.numel();
    ops::adamw_update(params.flat_values().rows(p.offset, n), params.flat_grads().rows(p.offset, n),
                      m_.rows(p.offset, n), v_.rows(p.offset, n), hp, p.decay);
  }
  params.refresh_bf16_copy();
}

std::string first_non_finite(const ParameterSet& params, const Tensor& m, const Tensor& v) {
  const std::pair<const char*, Tensor> flats[] = {
      {"parameter", params.flat_values()}, {"AdamW moment m of", m}, {"AdamW moment v of", v}};
  for (const auto& [what, flat] : flats) {
    if (!flat.defined() || ops::all_finite(flat)) continue;
    for (const Parameter& p : params.all())
      if (!ops::all_finite(flat.rows(p.offset, p.shape.numel())))
        return cat(what, " '", p.name, "'");
    return cat(what, " the parameters");  // not reached: the parameters tile the flat buffer
  }
  return "";
}

double grad_norm(const ParameterSet& params) {
  return std::sqrt(ops::sum_squares(params.flat_grads()));
}

double clip_grad_norm(ParameterSet& params, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return 1.0;
  const double factor = max_norm / (norm + 1e-6);
  ops::scale(params.flat_grads(), static_cast<float>(factor));
  return factor;
}

}  // namespace rt
