// CUDA implementations behind kernels/ops.h, on raw device pointers: the list of kernels is
// kernels/backend_ops.inc, shared with the CPU backend.
// Every kernel runs on rt::cuda::compute_stream(); results that return to the host (a loss, a
// norm) synchronise that stream. f32 in and out (gemm_bf16: bf16 operands, f32 out), f32
// accumulation (double where the CPU op uses double), and reductions in a fixed order, so a run
// is deterministic on one GPU.
#pragma once

#include <cstdint>

#include "kernels/adamw_step.h"  // AdamWStep
#include "kernels/kernel_shapes.h"
#include "kernels/rope_frequencies.h"

namespace rt::cuda {

#include "kernels/backend_ops.inc"

}  // namespace rt::cuda
