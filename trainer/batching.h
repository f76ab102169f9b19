// This rank's share of each step: the step's sequences (data/loader.h BatchSource) split over
// the dp groups, cut by the zigzag layout over the sp ranks, in micro-batches of at most
// train.micro_tokens tokens per group. Sequence lengths may change from step to step (dataset
// decomposition): layouts are made once per length, and the start-up check covers every
// length the source can produce.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "data/corpus.h"
#include "data/loader.h"
#include "model/batch.h"
#include "model/model.h"
#include "parallel/grid.h"
#include "trainer/recipe.h"

namespace rt {

// A micro-batch with its own storage.
struct OwnedBatch {
  std::vector<int32_t> tokens, targets, positions;
  int64_t n_seqs = 0;
  const SequenceLayout* layout = nullptr;

  Tensor on_device;  // tokens, targets, positions as i32 [3, T] on the GPU (view() fills it)

  // The batch as the model reads it: views of the vectors on the CPU, of on_device on the GPU.
  Batch view(Communicator* sp_group, Device device = Device::CPU);
  int64_t target_count() const;
};

struct RankStep {
  int64_t seq_len = 0, sequences = 0;  // the global batch
  std::vector<OwnedBatch> micro;
};

class StepBatcher {
 public:
  StepBatcher(const BatchSource& source, const Corpus& corpus, const Grid& grid,
              int64_t tokens_per_step, int64_t micro_tokens);

  // Every length the source produces must split over the grid: a UserError naming the key
  // (Recipe::where names the file or --set) otherwise. conv_halo: rows a zigzag unit must have
  // (Mamba-2).
  void check(const Recipe& recipe, int64_t conv_halo) const;
  RankStep fetch(int64_t step);
  // The largest arena one micro-batch of any length needs (the dry run prints it; the arena
  // is sized to it at start).
  int64_t max_activation_bytes(const Model& model, bool recompute);
  // Sequences per micro-batch of one dp group at this length.
  int64_t micro_seqs(int64_t seq_len) const;
  const SequenceLayout& layout(int64_t seq_len);

 private:
  const BatchSource& source_;
  const Corpus& corpus_;
  const Grid& grid_;
  int64_t tokens_per_step_, micro_tokens_;
  std::map<int64_t, std::unique_ptr<SequenceLayout>> layouts_;
};

}  // namespace rt
