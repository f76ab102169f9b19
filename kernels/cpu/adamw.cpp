// AdamW on the CPU: kernels/adamw_step.h for each element.
#include "kernels/adamw_step.h"
#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& s) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) adamw_element(param[i], grad[i], m[i], v[i], s);
}

}  // namespace rt::cpu
