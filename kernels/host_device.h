// RT_HOST_DEVICE marks a small function that both the CPU backend and CUDA kernels call, so
// that the two compute with one definition (kernels/bf16.h, kernels/adamw_step.h).
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>  // __host__, __device__
#define RT_HOST_DEVICE __host__ __device__
#else
#define RT_HOST_DEVICE
#endif
