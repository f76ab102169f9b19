// Concat-and-chunk batches: the corpus token stream is cut into sequences of seq_len + 1
// tokens (inputs and shifted targets; consecutive sequences share one boundary token), and
// each step takes the next seqs_per_step sequences of a seeded permutation of them, one
// permutation per epoch. Which sequences a step holds is a pure function of (seed, step): any
// rank computes it without talking to the others, and a resume needs only the step.
#pragma once

#include <cstdint>
#include <vector>

#include "data/corpus.h"
#include "data/curriculum.h"
#include "data/decompose.h"
#include "parallel/layout.h"

namespace rt {

// A bijection of [0, n) keyed by a seed: a 4-round Feistel network on the next even power of
// two, cycle-walking values >= n back into range. O(1) memory for any n.
class SeededPermutation {
 public:
  SeededPermutation(uint64_t n, uint64_t seed);
  uint64_t operator()(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t n_, half_bits_, half_mask_;
  uint64_t keys_[4];
};

class ConcatChunkSampler {
 public:
  ConcatChunkSampler(int64_t num_tokens, int64_t seq_len, uint64_t seed);
  int64_t num_sequences() const { return num_sequences_; }
  // Corpus offset of sequence j (0 <= j < seqs_per_step) of the global batch of `step`.
  int64_t sequence_start(int64_t step, int64_t j, int64_t seqs_per_step) const;

 private:
  int64_t seq_len_, num_sequences_;
  uint64_t seed_;
};

// What a step trains on, for the whole world: sequences of seq_len + 1 tokens at `starts`.
struct StepSequences {
  int64_t seq_len = 0;
  std::vector<int64_t> starts;
};

// The global batches of a run, a pure function of (seed, step).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual StepSequences at(int64_t step) const = 0;
  // Every sequence length a step can have (the checks and the memory plan cover each).
  virtual std::vector<int64_t> seq_lens() const = 0;
  virtual std::string describe() const = 0;
};

// Fixed-length sequences of the concatenated corpus (ConcatChunkSampler).
class ConcatChunkSource final : public BatchSource {
 public:
  ConcatChunkSource(int64_t num_tokens, int64_t seq_len, int64_t tokens_per_step, uint64_t seed);
  StepSequences at(int64_t step) const override;
  std::vector<int64_t> seq_lens() const override { return {seq_len_}; }
  std::string describe() const override;
  int64_t num_sequences() const { return sampler_.num_sequences(); }

 private:
  ConcatChunkSampler sampler_;
  int64_t seq_len_, per_step_;
};

// Dataset decomposition: one bucket per step on the curriculum (data/curriculum.h).
class DecomposedSource final : public BatchSource {
 public:
  DecomposedSource(Buckets buckets, int64_t tokens_per_step, const CurriculumSpec& spec,
                   uint64_t seed);
  StepSequences at(int64_t step) const override;
  std::vector<int64_t> seq_lens() const override;
  std::string describe() const override;
  const CurriculumSchedule& schedule() const { return schedule_; }

 private:
  Buckets buckets_;
  CurriculumSchedule schedule_;
};

// This rank's rows of one sequence starting at corpus offset `start`: for each segment of the
// layout, tokens [start + segment.global_start, + length) as inputs and the next token of each as
// targets, read straight from the corpus (nothing else of the sequence is read).
// Appends to tokens, targets and positions.
void read_sequence(const Corpus& corpus, int64_t start, const SequenceLayout& layout,
                   std::vector<int32_t>& tokens, std::vector<int32_t>& targets,
                   std::vector<int32_t>& positions);

}  // namespace rt
