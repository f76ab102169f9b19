// AdamW with decoupled weight decay (torch.optim.AdamW) on the GPU, one thread per element;
// the bias corrections are computed once on the host, as on the CPU.
//   param, grad, m, v: [n] f32
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float wd, float bc1,
                             float bc2) {
  RT_GRID_STRIDE(i, n) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i] - wd * param[i];
    param[i] = p - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  bool decay) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(step)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(step)));
  const float wd = decay ? lr * weight_decay : 0.0f;
  adamw_kernel<<<blocks_for(n), kThreads, 0, compute_stream()>>>(param, grad, m, v, n, lr, beta1,
                                                                 beta2, eps, wd, bc1, bc2);
  RT_CUDA_LAUNCHED();
}

}  // namespace rt::cuda
