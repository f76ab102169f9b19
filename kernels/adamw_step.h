// One AdamW step (decoupled weight decay, as torch.optim.AdamW) of one element, the formula both
// backends run; the step's scalars are computed once per op in kernels/ops.cpp:
//   p -= lr * wd * p                      (wd = 0 for parameters without decay)
//   m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc1 = 1 - b1^t, bc2 = 1 - b2^t
#pragma once

#include <cmath>

#include "kernels/host_device.h"

namespace rt {

struct AdamWStep {
  float lr, beta1, beta2, eps;
  float wd;        // lr * weight_decay, or 0
  float bc1, bc2;  // the bias corrections
};

RT_HOST_DEVICE inline void adamw_element(float& param, float grad, float& m, float& v,
                                         const AdamWStep& s) {
  const float mi = s.beta1 * m + (1.0f - s.beta1) * grad;
  const float vi = s.beta2 * v + (1.0f - s.beta2) * grad * grad;
  m = mi;
  v = vi;
  const float p = param - s.wd * param;
  param = p - s.lr * (mi / s.bc1) / (std::sqrt(vi / s.bc2) + s.eps);
}

}  // namespace rt
