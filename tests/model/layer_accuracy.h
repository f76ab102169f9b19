// A GLA or Mamba-2 layer's gradients on one long sequence, cut over an sp group, against the
// float64 layer reference (tests/reference/naive_layers.h): what the long-sequence tests and
// bench/layer_accuracy check. The error that grows with T lives in the per-head (per-channel)
// parameters behind the decay, which sum a gradient over every token of the sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "parallel/comm.h"

namespace rt::testing {

struct GradientError {
  std::string name;  // the parameter's name without the layer prefix ("A_log"), or "dx"
  double error;      // relative RMS error against float64
};

// symbol 'G' or 'M' of cfg, one sequence of T tokens (T divisible by 2 sp), parameters from
// the layer's own initialisation (seed), x and dy ~ N(0, 1). The layer runs on this rank's
// share (sp_group null: all of it); parameter gradients are summed over the group. Rank 0 of
// the group returns the error of every parameter gradient (and of dx when the group is one
// rank); the other ranks return nothing.
std::vector<GradientError> layer_gradient_errors(char symbol, const ModelConfig& cfg, int64_t T,
                                                 Communicator* sp_group, uint64_t seed);

// The bound the long-sequence tests hold a gradient's error to: 1e-4 for the parameters whose
// gradient sums the decay's gradient over the whole sequence (A_log, dt_bias, GLA's gate bias),
// f32 rounding (2e-6) for every other one.
double long_sequence_tolerance(const std::string& name);

}  // namespace rt::testing
