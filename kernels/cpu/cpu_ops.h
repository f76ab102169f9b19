// CPU implementations behind kernels/ops.h (OpenBLAS GEMM, OpenMP loops): the list of
// kernels is kernels/backend_ops.inc, shared with the CUDA backend.
#pragma once

#include <cstdint>

#include "kernels/adamw_step.h"  // AdamWStep

namespace rt {

// Shapes the attention and recurrence kernels of every backend take.
struct AttentionDims {
  int64_t Tq, Tk;
  int64_t H, Hkv, D;
};
// A GEMM operand for gemm_bf16: row-major with leading dimension ld, f32 (rounded to bf16 before
// the product) or already bf16 (uint16_t bits).
struct GemmInput {
  const void* data;
  int64_t ld;
  bool bf16;
};
struct GlrDims {
  int64_t T, H, Hg, dk, dv;
  bool vector_decay;  // g [T, H, dk] (GLA) or [T, H] (Mamba-2)
  int64_t chunk;
  float scale;
};

namespace cpu {

#include "kernels/backend_ops.inc"

// Tile sizes of the blockwise kernels (rows of Q x rows of K per GEMM tile). Tunable for
// benchmarks and varied by the tests; results agree to rounding for any choice.
struct AttentionTiles {
  int64_t q = 128;
  int64_t k = 128;
};
AttentionTiles& attention_tiles();

}  // namespace cpu
}  // namespace rt
