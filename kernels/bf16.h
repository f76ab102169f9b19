// bfloat16 <-> f32 on the host and in CUDA kernels, the same bits on both: f32 rounded to the
// nearest bf16 (ties to even), NaN kept a (quiet) NaN. bf16 is the top half of an f32, so the
// way back is exact. Weights and GEMM operands travel in bf16 under run.precision: bf16.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/host_device.h"

namespace rt {

RT_HOST_DEVICE inline uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even (overflow to inf is correct)
  return static_cast<uint16_t>(u >> 16);
}

RT_HOST_DEVICE inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace rt
