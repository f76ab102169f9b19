// What the model is fed: this rank's tokens of a micro-batch and where they sit.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/layout.h"

namespace rt {

struct Batch {
  Tensor tokens;        // i32 [T], T = n_seqs * layout.local_len
  Tensor targets;       // i32 [T], the next token of each; < 0 = no target (not in the loss)
  Tensor positions;     // i32 [T], global position of each token in its sequence (RoPE)
  SequenceContext seq;  // parallel/layout.h
};

}  // namespace rt
