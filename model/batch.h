// What the model is fed: this rank's tokens of a micro-batch and where they sit.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/layout.h"

namespace rt {

// Where the rows of a batch come from: n_seqs sequences, each cut by `layout` across the sp
// group; this rank holds layout.local_len rows of each, sequence after sequence.
struct SequenceContext {
  const SequenceLayout* layout = nullptr;
  int64_t n_seqs = 0;
  Communicator* sp_group = nullptr;  // null: a group of one
};

struct Batch {
  Tensor tokens;     // i32 [T], T = n_seqs * layout.local_len
  Tensor targets;    // i32 [T], the next token of each; < 0 = no target (not in the loss)
  Tensor positions;  // i32 [T], global position of each token in its sequence (RoPE)
  SequenceContext seq;
};

}  // namespace rt
