// Row-major GEMM through cuBLASLt: C[M,N] = alpha op(A) op(B) + beta C.
// cuBLASLt is column-major, and a row-major matrix is its column-major transpose, so the call
// computes C^T = op(B)^T op(A)^T: the operands swap places and keep their transpose flags.
// Compute in f32 without TF32, so that results agree with the CPU's sgemm to rounding; gemm_bf16
// takes bf16 operands (tensor cores) with f32 accumulation and output, like the CPU's gemm_bf16.
#include <cublasLt.h>

#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

void check_blas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw RunError(
        cat(file, ":", line, ": cuBLASLt call ", call, " failed with status ", static_cast<int>(s)),
        1);
}
#define RT_BLAS(call) check_blas((call), #call, __FILE__, __LINE__)

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS suggests for Hopper

struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  Lt() {
    RT_BLAS(cublasLtCreate(&handle));
    RT_CUDA(cudaMalloc(&workspace, kWorkspaceBytes));
  }
};

Lt& lt() {
  static Lt instance;  // one device per process (one rank per GPU)
  return instance;
}

// Largest power of two up to 256 dividing the address, at least the element size. cuBLASLt
// assumes 256-byte aligned operands unless told otherwise, and arena views are only 64-byte
// aligned (row views less; a row view of a bf16 weight may sit on any 2-byte boundary): an
// algorithm chosen for alignment the pointer lacks fails with NOT_SUPPORTED.
uint32_t alignment_of(const void* p, uint32_t element_bytes) {
  uint32_t a = 256;
  while (a > element_bytes && reinterpret_cast<uintptr_t>(p) % a) a /= 2;
  return a;
}

// Descriptors that are destroyed also when a call throws.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc() { RT_BLAS(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)); }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(desc); }
};
struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  Preference() { RT_BLAS(cublasLtMatmulPreferenceCreate(&pref)); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  template <class T>
  void set(cublasLtMatmulPreferenceAttributes_t attribute, T value) {
    RT_BLAS(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value));
  }
};

// A column-major rows x cols matrix of `type` with leading dimension ld.
struct Layout {
  cublasLtMatrixLayout_t desc = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    RT_BLAS(cublasLtMatrixLayoutCreate(&desc, type, rows, cols, ld));
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(desc); }
};

__global__ void scale_matrix_kernel(float* c, int64_t rows, int64_t cols, int64_t ld, float beta) {
  RT_GRID_STRIDE(i, rows * cols) {
    float* e = c + (i / cols) * ld + i % cols;
    *e = beta == 0.0f ? 0.0f : beta * *e;  // beta 0 overwrites, even a NaN
  }
}

// out [rows, cols] (dense) = in [rows, cols] (leading dimension ld) rounded to bf16.
__global__ void to_bf16_matrix_kernel(uint16_t* out, const float* in, int64_t rows, int64_t cols,
                                      int64_t ld) {
  RT_GRID_STRIDE(i, rows * cols) out[i] = f32_to_bf16(in[(i / cols) * ld + i % cols]);
}

__global__ void to_bf16_kernel(uint16_t* out, const float* x, int64_t n) {
  RT_GRID_STRIDE(i, n) out[i] = f32_to_bf16(x[i]);
}

// C = alpha op(A) op(B) + beta C, row-major, A and B of `type` (f32 or bf16), C f32.
void lt_matmul(cudaDataType_t type, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: cuBLASLt may refuse it
    scale_matrix_kernel<<<blocks_for(m * n), kThreads, 0, compute_stream()>>>(c, m, n, ldc, beta);
    RT_CUDA_LAUNCHED();
    return;
  }
  // Column-major problem: C'[n, m] = op'(B') op'(A'), with B' = our b and A' = our a.
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  Layout first(type, trans_b ? k : n, trans_b ? n : k, ldb);
  Layout second(type, trans_a ? m : k, trans_a ? k : m, lda);
  Layout out(CUDA_R_32F, n, m, ldc);

  MatmulDesc desc;
  RT_BLAS(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                         sizeof(op_first)));
  RT_BLAS(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                         sizeof(op_second)));
  Preference pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kWorkspaceBytes);
  const uint32_t ab_bytes = type == CUDA_R_32F ? 4 : 2;
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
           alignment_of(b, ab_bytes));  // its A is our b
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(a, ab_bytes));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(c, 4));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(c, 4));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  RT_BLAS(cublasLtMatmulAlgoGetHeuristic(lt().handle, desc.desc, first.desc, second.desc, out.desc,
                                         out.desc, pref.pref, 1, &heuristic, &found));
  RT_CHECK(found > 0, "cuBLASLt has no algorithm for a ", m, "x", n, "x", k,
           type == CUDA_R_32F ? " f32" : " bf16", " GEMM");
  RT_BLAS(cublasLtMatmul(lt().handle, desc.desc, &alpha, b, first.desc, a, second.desc, &beta, c,
                         out.desc, c, out.desc, &heuristic.algo, lt().workspace, kWorkspaceBytes,
                         compute_stream()));
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  lt_matmul(CUDA_R_32F, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               GemmInput a, GemmInput b, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  // f32 operands are rounded into dense bf16 copies for the length of the call.
  const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  Scratch a16(a.bf16 ? 0 : static_cast<size_t>(a_rows * a_cols) * sizeof(uint16_t));
  Scratch b16(b.bf16 ? 0 : static_cast<size_t>(b_rows * b_cols) * sizeof(uint16_t));
  if (!a.bf16 && a_rows * a_cols > 0) {
    launch(to_bf16_matrix_kernel, a_rows * a_cols, a16.as<uint16_t>(),
           static_cast<const float*>(a.data), a_rows, a_cols, a.ld);
    a = {a16.as<uint16_t>(), a_cols, true};
  }
  if (!b.bf16 && b_rows * b_cols > 0) {
    launch(to_bf16_matrix_kernel, b_rows * b_cols, b16.as<uint16_t>(),
           static_cast<const float*>(b.data), b_rows, b_cols, b.ld);
    b = {b16.as<uint16_t>(), b_cols, true};
  }
  lt_matmul(CUDA_R_16BF, trans_a, trans_b, m, n, k, alpha, a.data, a.ld, b.data, b.ld, beta, c,
            ldc);
}

void to_bf16(uint16_t* out, const float* x, int64_t n) { launch(to_bf16_kernel, n, out, x, n); }

}  // namespace rt::cuda
