#include "trainer/train_step.h"

#include <cmath>

#include "core/check.h"
#include "kernels/ops.h"
#include "parallel/watchdog.h"
#include "trainer/collective.h"
#include "trainer/metrics.h"  // peak_rss_mib

namespace rt {

TrainStep::TrainStep(Model& model, AdamWOptimizer& optim, Communicator& world,
                     Communicator& tensors, Arena& arena, bool recompute, double grad_clip)
    : model_(model),
      optim_(optim),
      world_(world),
      tensors_(tensors),
      arena_(arena),
      recompute_(recompute),
      grad_clip_(grad_clip) {}

StepResult TrainStep::run(const StepInput& input, int64_t step, double lr,
                          const std::string& last_checkpoint) {
  ParameterSet& params = model_.params();
  StepResult r;
  r.targets = static_cast<double>(input.target_count);
  world_.allreduce_sum(&r.targets, 1, "allreduce(target count)");
  const float grad_scale = static_cast<float>(1.0 / r.targets);

  ops::fill(params.flat_grads(), 0.0f);
  arena_.reset_peak();
  double loss_sum = 0;
  for (const Batch& mb : input.micro) {
    loss_sum += model_.forward_backward(mb, grad_scale, recompute_, arena_);
    arena_.reset();
  }
  tensors_.allreduce_sum(params.flat_grads().f32(), params.numel(), "allreduce(gradients)");
  // The stop flag travels with the memory figures: every rank learns the largest of each.
  double flags[3] = {Watchdog::stop_signal() ? 1.0 : 0.0, peak_rss_mib(),
                     arena_.peak() / 1048576.0};
  world_.allreduce_sum(&loss_sum, 1, "allreduce(loss)");
  world_.allreduce_max(flags, 3, "allreduce(stop flag, memory)");
  r.stop_requested = flags[0] > 0;
  r.peak_rss_mib = flags[1];
  r.arena_peak_mib = flags[2];

  r.loss = loss_sum / r.targets;
  r.grad_norm = grad_norm(params);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))  // the same numbers on every rank
    throw AgreedError(
        cat("step ", step + 1, ": loss is ", r.loss, " and the gradient norm is ", r.grad_norm,
            "; stopped before the update. Last checkpoint: ", last_checkpoint,
            ". Try a lower optim.lr, a longer "
            "schedule.warmup_steps or optim.grad_clip"),
        kExitDiverged);
  clip_grad_norm(params, r.grad_norm, grad_clip_);
  optim_.update(params, lr, step);
  // The update itself can overflow (a huge lr) or carry a non-finite moment forward: checked
  // here, before the state can reach a checkpoint or the next step (the same values on
  // every rank; agreed all the same, so that no rank waits for one that stopped).
  on_every_rank(world_, [&] {
    const std::string bad = first_non_finite(params, optim_.m(), optim_.v());
    if (!bad.empty())
      throw RunError(cat("step ", step + 1, ": after the update (lr ", lr, ") ", bad,
                         " holds a non-finite value; stopped before a checkpoint could hold it. "
                         "Last checkpoint: ",
                         last_checkpoint,
                         ". Try a lower optim.lr or "
                         "optim.grad_clip"),
                     kExitDiverged);
  });
  return r;
}

}  // namespace rt
