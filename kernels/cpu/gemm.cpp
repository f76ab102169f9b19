// GEMM through OpenBLAS. Called from inside OpenMP regions (attention tiles) the OpenMP build
// of OpenBLAS runs single-threaded; called outside, it uses every thread.
#include <cblas.h>
#include <omp.h>

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

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

}  // namespace rt::cpu
