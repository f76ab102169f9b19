// Element-wise ops and reductions. Reductions use a fixed blocking that does not depend on the
// thread count, so their results are bit-identical from run to run and across thread counts.
#include <cmath>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_ops.h"

namespace rt::cpu {

namespace {
constexpr int64_t kReduceBlock = 1 << 16;
}

void fill(float* x, int64_t n, float value) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void add_bf16(uint16_t* out, const float* a, const uint16_t* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(a[i] + bf16_to_f32(b[i]));
}

void accumulate(float* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

void scale(float* x, int64_t n, float factor) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

double sum_squares(const float* x, int64_t n) {
  int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(blocks);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t lo = b * kReduceBlock, hi = std::min(n, lo + kReduceBlock);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[b] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

bool all_finite(const float* x, int64_t n) {
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) bad |= !std::isfinite(x[i]);
  return !bad;
}

}  // namespace rt::cpu
