// The training step, once for the trainer and the benchmarks: this rank's micro-batches ->
// forward + backward each -> gradient all-reduce -> loss, stop flag and memory reductions ->
// global gradient norm -> finite check -> clip -> AdamW -> finite check of the new state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "model/batch.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "trainer/optimizer.h"

namespace rt {

// This rank's share of one step: the micro-batches as the model reads them, and how many of
// their targets count (>= 0), known on the host.
struct StepInput {
  std::vector<Batch> micro;
  int64_t target_count = 0;
};

struct StepResult {
  double loss = 0;              // mean cross entropy over every target of the step, all ranks
  double grad_norm = 0;         // global, before clipping
  double targets = 0;           // targets of the step over all ranks
  bool stop_requested = false;  // a rank has seen a stop signal (parallel/watchdog.h)
  double peak_rss_mib = 0, arena_peak_mib = 0;  // the largest over the ranks
};

class TrainStep {
 public:
  // world: every rank (losses, flags); tensors: the communicator of the model's tensors (the
  // same ranks; on the GPU it stages or uses NCCL), for the gradient all-reduce.
  TrainStep(Model& model, AdamWOptimizer& optim, Communicator& world, Communicator& tensors,
            Arena& arena, bool recompute, double grad_clip);

  // One optimizer step (0-based `step`) at learning rate lr. A non-finite loss or gradient
  // norm stops before the update (AgreedError, exit 3); a non-finite weight or moment after
  // it stops before anything can save it (RunError, exit 3). Both messages name
  // `last_checkpoint`, the one to resume from.
  StepResult run(const StepInput& input, int64_t step, double lr,
                 const std::string& last_checkpoint = "(none)");

 private:
  Model& model_;
  AdamWOptimizer& optim_;
  Communicator& world_;
  Communicator& tensors_;
  Arena& arena_;
  bool recompute_;
  double grad_clip_;
};

}  // namespace rt
