// AdamW with decoupled weight decay, as torch.optim.AdamW:
//   p -= lr * wd * p                      (only for decayed parameters)
//   m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  bool decay) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(step)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(step)));
  const float wd = decay ? lr * weight_decay : 0.0f;
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i] - wd * param[i];
    param[i] = p - lr * (mi / bc1) / (std::sqrt(vi / bc2) + eps);
  }
}

}  // namespace rt::cpu
