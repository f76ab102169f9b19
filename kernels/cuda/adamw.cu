// AdamW on the GPU, one thread per element: kernels/adamw_step.h, the CPU's formula.
//   param, grad, m, v: [n] f32
#include "kernels/adamw_step.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                             AdamWStep s) {
  RT_GRID_STRIDE(i, n) adamw_element(param[i], grad[i], m[i], v[i], s);
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& s) {
  launch(adamw_kernel, n, param, grad, m, v, n, s);
}

}  // namespace rt::cuda
