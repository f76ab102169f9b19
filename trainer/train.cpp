// `ringtrain train`: the world of ranks, and the Trainer (trainer/trainer.h) on it.
#include "trainer/train.h"

#include <memory>

#include "parallel/comm.h"
#include "trainer/trainer.h"

namespace rt {

namespace {

// The world lives until the process ends: main() reports errors after run_train unwound.
std::unique_ptr<Communicator> g_world;

}  // namespace

int process_rank() { return g_world ? g_world->rank() : 0; }

void abort_job_if_parallel(int code) {
  if (g_world && g_world->size() > 1) g_world->abort(code);
}

int run_train(const TrainOptions& opt) {
  if (!g_world) g_world = mpi_world();
  Trainer trainer(*g_world, opt);
  return trainer.run();
}

}  // namespace rt
