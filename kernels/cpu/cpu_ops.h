// CPU implementations behind kernels/ops.h (OpenBLAS GEMM, OpenMP loops): the list of
// kernels is kernels/backend_ops.inc, shared with the CUDA backend.
#pragma once

#include <cstdint>

#include "kernels/adamw_step.h"  // AdamWStep
#include "kernels/kernel_shapes.h"
#include "kernels/rope_frequencies.h"

namespace rt::cpu {

#include "kernels/backend_ops.inc"

// Tile sizes of the blockwise kernels (rows of Q x rows of K per GEMM tile). Tunable for
// benchmarks and varied by the tests; results agree to rounding for any choice.
struct AttentionTiles {
  int64_t q = 128;
  int64_t k = 128;
};
AttentionTiles& attention_tiles();

}  // namespace rt::cpu
