// What `ringtrain train` decides before the first step, each a short function the Trainer
// (trainer/trainer.h) calls in order: threads per rank, the communicator of the model's tensors,
// the corpora and their batch sources, the memory plan and its check, the header it prints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "data/corpus.h"
#include "data/loader.h"
#include "kernels/device.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "trainer/batching.h"
#include "trainer/recipe.h"

namespace rt {

// One process per core group: with OMP_NUM_THREADS unset, a rank takes the cores it is bound
// to, or its share of the machine when the launcher did not bind it. Returns the thread count
// and, in `warning`, what is wrong with an explicit OMP_NUM_THREADS.
int configure_threads(const LocalPlacement& placement, std::string& warning);

// What carries the model's tensors between ranks: MPI for CPU tensors; for GPU tensors NCCL,
// or MPI with the device buffers staged through host memory (parallel.gpu_comm). Collective.
std::unique_ptr<Communicator> tensor_communicator(const Recipe& r, Device device, bool dry_run,
                                                  Communicator& world);

// The corpus at `path` (named by the recipe key `key` in messages); a vocabulary larger than
// model.vocab_size is a UserError.
Corpus open_corpus(const Recipe& r, const std::string& path, const std::string& key);
// The batches of the run: concat-and-chunk or the dataset-decomposition curriculum.
std::unique_ptr<BatchSource> make_source(const Recipe& r, const Corpus& corpus);
// Validation's fixed-length sequences (eval.seq_len, else data.seq_len), so that runs of
// either data mode are measured on the same batches.
std::unique_ptr<BatchSource> make_val_source(const Recipe& r, const Corpus& val_corpus);

// What one rank holds: f32 parameters, gradients, AdamW m and v, under bf16 the weights' bf16
// copy; and the arena of activations (the largest micro-batch, the dry run's estimate).
struct MemoryPlan {
  double state_bytes = 0;
  double activation_bytes = 0;
  double total() const { return state_bytes + activation_bytes; }
};
MemoryPlan memory_plan(const Recipe& r, const Model& model, StepBatcher& batcher,
                       StepBatcher* val_batcher);
// The plan against what this rank can have: the host's available memory (MemAvailable or the
// cgroup's limit) shared by the ranks of this node, and on a GPU its free memory. Refused
// before anything is allocated (a UserError), unless run.memory_check is false; a dry run
// (no GPU opened) only says it. Returns the line to print.
std::string check_memory(const Recipe& r, const MemoryPlan& plan, Device device, int gpu,
                         bool dry_run);

// The resolved recipe, the grid, the model, the data and the memory plan (rank 0 prints it).
void print_header(const Recipe& r, const Grid& g, int threads, int gpu, const Model& model,
                  const CorpusInfo& corpus, const BatchSource& source, StepBatcher& batcher,
                  const MemoryPlan& plan);

}  // namespace rt
