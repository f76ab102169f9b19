// Which bucket each step draws (Algorithm 1 of the dataset-decomposition paper, docs/DESIGN.md §7).
// Every step takes one bucket k and tokens_per_step / 2^k of its sequences, so tokens per step
// are constant while the attention cost follows real document lengths.
//
// An epoch uses every sequence of every bucket: bucket k gives b_k = ceil(n_k / per_step_k)
// batches (the last one completed with the epoch's first sequences of the bucket). The epoch
// is split into `cycles` cycles; each bucket brings 1/cycles of its batches to each cycle.
// Within a cycle, steps draw a bucket with probability proportional to its odds among the
// buckets that still have batches in the cycle, and a bucket leaves the draw when its share is
// used. A run shorter than an epoch (span_steps, the run's train.steps) spreads the cycles over
// its own steps instead: each bucket brings its share of the epoch scaled to the span (largest
// remainders, so the shares add up to the span), and the sequences continue through the
// bucket's epoch order from one span to the next. Odds, shortest bucket first: uniform 1:1:...,
// natural = remaining batches, grow_linear n:..:2:1, grow_p2 2^(n-1):..:2:1 (short sequences early
// in each cycle), or given. Sequence order within a bucket is a seeded permutation per epoch.
// Everything is a pure function of (seed, step): every rank computes the same schedule, a resume
// needs only the step, and it does not depend on dp or sp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/enum_names.h"
#include "data/decompose.h"

namespace rt {

// How often each bucket is drawn: the same for all, as many draws as sequences (natural), or
// shorter buckets first, growing linearly or by powers of two (data.curriculum).
enum class CurriculumKind { Uniform, Natural, GrowLinear, GrowP2 };
template <>
struct EnumNames<CurriculumKind> {
  static constexpr std::string_view noun = "curriculum";
  static constexpr std::array<std::string_view, 4> names = {"uniform", "natural", "grow_linear",
                                                            "grow_p2"};
};

struct CurriculumSpec {
  CurriculumKind kind = CurriculumKind::GrowP2;
  std::vector<double> odds;  // one per bucket, shortest first; overrides kind when given
  int64_t cycles = 8;
  int64_t span_steps = 0;  // the run's steps: the cycles span min(epoch, span_steps); 0 = epoch
};

class CurriculumSchedule {
 public:
  // bucket_sizes[i]: sequences in bucket min_log2 + i. A bucket longer than tokens_per_step
  // forms no batch and is never drawn (the trainer refuses such a corpus at start).
  CurriculumSchedule(std::vector<int64_t> bucket_sizes, int min_log2, int64_t tokens_per_step,
                     const CurriculumSpec& spec, uint64_t seed);

  struct Draw {
    int log2_len = 0;  // the bucket: sequences of 2^log2_len tokens
    int64_t epoch = 0;
    int64_t batch = 0;  // index among the bucket's batches of this epoch
  };
  Draw at(int64_t step) const;
  // The bucket-local indices of the sequences of a draw (per_step(k) of them).
  std::vector<int64_t> sequences(const Draw& draw) const;

  int64_t per_step(int log2_len) const { return tokens_per_step_ >> log2_len; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Steps the cycles span: an epoch, or the run when it is shorter (CurriculumSpec::span_steps).
  int64_t period() const { return period_; }
  int64_t batches(int log2_len) const { return batches_.at(log2_len - min_log2_); }
  // Batches of bucket log2_len in each period, and in cycle `cycle` of a period.
  int64_t period_batches(int log2_len) const { return period_batches_.at(log2_len - min_log2_); }
  int64_t cycle_share(int log2_len, int64_t cycle) const;
  int64_t cycles() const { return spec_.cycles; }

 private:
  const std::vector<std::pair<int, int64_t>>& period_draws(int64_t period) const;

  std::vector<int64_t> sizes_, batches_, period_batches_;
  int min_log2_;
  int64_t tokens_per_step_, steps_per_epoch_ = 0, period_ = 0;
  CurriculumSpec spec_;
  uint64_t seed_;
  mutable int64_t cached_period_ = -1;
  mutable std::vector<std::pair<int, int64_t>> cached_;  // (bucket index, batch) per step
};

// Odds of `kind` for n buckets, shortest first (empty for "natural", which follows the
// remaining batches).
std::vector<double> curriculum_odds(CurriculumKind kind, int n);

}  // namespace rt
