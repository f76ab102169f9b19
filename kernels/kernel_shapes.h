// Shapes the attention, GEMM and recurrence kernels of every backend take (kernels/cpu/ and
// kernels/cuda/ alike, through kernels/backend_ops.inc).
#pragma once

#include <cstdint>

namespace rt {

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

}  // namespace rt
