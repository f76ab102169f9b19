// `ringtrain train` as one object: setup (recipe, grid, data, memory plan), resume, the loop of
// steps (trainer/train_step.h, the step the benchmarks run too), validation and checkpoints.
// Each is a short member function; run() calls them in order.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "data/corpus.h"
#include "data/loader.h"
#include "kernels/arena.h"
#include "kernels/device.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "trainer/batching.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"
#include "trainer/setup.h"
#include "trainer/train.h"
#include "trainer/train_step.h"

namespace rt {

class Trainer {
 public:
  // Loads and checks the recipe, opens the GPU and the corpora, builds the grid and the batch
  // sources, plans and checks the memory and prints the header (rank 0). Collective: every
  // rank of `world` constructs its Trainer together; errors are agreed (trainer/collective.h).
  Trainer(Communicator& world, const TrainOptions& options);
  ~Trainer();

  // A dry run returns after the set-up. Otherwise: allocate, resume, train to train.steps or
  // to a stop (signal, --stop-at), saving checkpoints on the way. Returns the exit code.
  int run();

 private:
  void load_recipe_and_grid();
  void open_data();
  void plan_memory();
  void allocate();
  void resume();
  void claim_run_directory();
  void init_from();
  void open_run_directory();
  void measure_peak();
  // One step with its log line, validation and checkpoint; false when the run stops here.
  bool train_step(int64_t step);
  void log_step(const RankStep& batch, const StepResult& result, double lr, double seconds);
  void validate(int64_t after_step);
  void save();
  void warn_if_sigterm_grace_short();
  void finish();

  Communicator& world_;
  const TrainOptions opt_;
  bool root_ = false;
  int threads_ = 1, gpu_ = -1;
  Device device_ = Device::CPU;
  Recipe recipe_;
  Grid grid_;
  Corpus corpus_, val_corpus_;
  std::unique_ptr<BatchSource> source_, val_source_;
  std::unique_ptr<StepBatcher> batcher_, val_batcher_;
  std::unique_ptr<Model> model_;
  MemoryPlan plan_;
  std::unique_ptr<AdamWOptimizer> optim_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<TrainStep> step_;
  std::unique_ptr<MetricsLog> metrics_;
  CheckpointState state_;
  std::string checkpoint_dir_, last_checkpoint_;
  double peak_gflops_ = 0;
  double slowest_step_s_ = 0, last_save_s_ = 0;  // what a stop under mpirun must fit in
  bool grace_warned_ = false;
  int64_t first_step_ = 0;
  std::chrono::steady_clock::time_point run_start_;
};

}  // namespace rt
