// GEMM through OpenBLAS. Called from inside OpenMP regions (attention tiles) the OpenMP build
// of OpenBLAS runs single-threaded; called outside, it uses every thread.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/device.h"

namespace rt {

void set_cpu_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() { return omp_get_max_threads(); }

}  // namespace rt

namespace rt::cpu {

namespace {

// A rows x cols operand as dense f32 values that are exactly its bf16 values.
std::vector<float> bf16_values(const GemmInput& x, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * x.ld + c;
      out[r * cols + c] = x.bf16 ? bf16_to_f32(static_cast<const uint16_t*>(x.data)[i])
                                 : bf16_to_f32(f32_to_bf16(static_cast<const float*>(x.data)[i]));
    }
  return out;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (m == 1) {
    // One row (generation's token): a GEMV. OpenBLAS's sgemm would pack all of B first, which
    // doubles the memory traffic of the step that is nothing but memory traffic.
    const blasint inc_a = trans_a ? static_cast<blasint>(lda) : 1;
    if (trans_b)  // c[j] = sum_i a[i] B[j, i]
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(k),
                  alpha, b, static_cast<blasint>(ldb), a, inc_a, beta, c, 1);
    else  // c[j] = sum_i a[i] B[i, j]
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(k), static_cast<blasint>(n),
                  alpha, b, static_cast<blasint>(ldb), a, inc_a, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

// The products of bf16 values are exact in f32, so this is what a bf16 tensor-core GEMM with f32
// accumulation computes, up to the order of the sums.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               GemmInput a, GemmInput b, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  const std::vector<float> av = bf16_values(a, trans_a ? k : m, a_cols);
  const std::vector<float> bv = bf16_values(b, trans_b ? n : k, b_cols);
  gemm(trans_a, trans_b, m, n, k, alpha, av.data(), std::max<int64_t>(a_cols, 1), bv.data(),
       std::max<int64_t>(b_cols, 1), beta, c, ldc);
}

void to_bf16(uint16_t* out, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

}  // namespace rt::cpu
