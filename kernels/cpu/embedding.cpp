// Token embedding lookup and its scatter-add backward.
//   out [T, C] = table [V, C] rows picked by tokens [T]
#include <algorithm>
#include <cstring>

#include <omp.h>

#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t T,
                       int64_t C) {
#pragma omp parallel for schedule(static) if (T * C > (1 << 16))
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(out + t * C, table + static_cast<int64_t>(tokens[t]) * C, C * sizeof(float));
}

// Threads own disjoint column ranges and walk the tokens in order, so repeated tokens are
// summed in the same order whatever the thread count: deterministic without atomics.
void embedding_backward(float* dtable, const int32_t* tokens, const float* dout, int64_t T,
                        int64_t C) {
#pragma omp parallel if (T * C > (1 << 16))
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t per = (C + nt - 1) / nt;
    int64_t c0 = std::min(C, tid * per), c1 = std::min(C, c0 + per);
    for (int64_t t = 0; t < T; ++t) {
      float* dst = dtable + static_cast<int64_t>(tokens[t]) * C;
      const float* src = dout + t * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace rt::cpu
