// The gated linear recurrence (GLR), chunked, on the CPU (docs/DESIGN.md §5):
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = scale * S_t^T q_t
// Per head, per chunk of n <= C tokens with local cumulative decay b_r = sum_{s<=r} g_s and
// gamma = b_{n-1}:
//   O       = scale * ((Q * e^b) S_prev + P V),   P_rj = sum_d q_rd k_jd e^{b_rd - b_jd} (j <= r)
//   S_next  = Diag(e^gamma) S_prev + (K * e^{gamma - b})^T V
// Every exponent is <= 0. The factors e^b and e^{gamma - b} of the inter-chunk terms are formed
// from differences of a cumulative decay kept in double: under strong decay b reaches -1e3
// within a chunk, where an f32 difference would carry an absolute error of ~1e-4.
//
// Intra-chunk scores P. Scalar decay (Mamba-2): P = (Q K^T) * L, L_rj = e^{b_r - b_j}, one GEMM
// and one exponential per pair. Vector decay (GLA): P cannot be one GEMM without exponents > 0,
// so the chunk is cut into sub-blocks of kSub rows (fla's secondary chunks):
//   - query block R (rows R0..) against every earlier row j < R0: one GEMM, the decay factored
//     through m = R0 - 1, the row before R: e^{b_r - b_j} = e^{b_r - b_m} e^{b_m - b_j}, with
//     e^{b_m - b_j} = e^{b_m - b_mJ} e^{b_mJ - b_j} through the last row mJ of j's block J;
//     every factor <= 1, the per-row ones computed once per chunk.
//   - the diagonal block R with itself: the pairs' decays as running products of the tokens'
//     own factors e^{g_s} <= 1, e^{b_r - b_j} = prod_{j < s <= r} e^{g_s}: at most kSub - 1
//     rounded products (relative error <= 15 ulp), no exponential per pair.
//
// Backward walks the chunks in reverse carrying dS (the gradient of the state after the
// chunk): dv, dq, dk of the chunk follow from dS, dO and S_prev (saved by the forward), and
// dS_prev = e^gamma * dS + scale (Q * e^b)^T dO. The gate gradient needs no pass of its own:
//   dg_t = sum_{t' >= t} (q_t' * dq_t' - k_t' * dk_t') + sum_v S_final * dS_final
// with this head's dq and dk (summed over dk for a scalar g). That suffix sum over the whole
// sequence would add the rounding of every later term, an error growing with T (1e-2 of
// Mamba-2's A_log gradient at 128K), so each chunk restarts it from its own end e:
//   dg_t = sum_{e >= t' >= t} (q_t' * dq_t' - k_t' * dk_t') + sum_v S_e * dS_e
// (S_e the state after the chunk, saved by the forward, dS_e its gradient from later tokens;
// the two agree exactly: scaling row i of S_e by l, and k_t'[i] by l, q_t'[i] by 1/l after e,
// changes the loss only through S_final). Its error is that of one chunk, whatever T is.
//
// Threads take contiguous blocks of heads and walk the chunks in order, their heads within.
// Query/key groups (Hg < H, Mamba-2's ngroups) share q and k between heads: their gradients are
// summed over the group, in place when one thread holds the whole group, else in per-thread
// buffers added in thread order at the end.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

namespace {

constexpr int64_t kSub = 16;

// e^{x - y} for two cumulative decays, the difference taken in double.
inline float decay(double x, double y) { return fast_exp(static_cast<float>(x - y)); }

// out[i] = a[i] * b[i], copies and y += alpha x: plain loops that vectorise.
inline void mul(float* out, const float* a, const float* b, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}
inline void copy_row(float* out, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i];
}
inline void axpy(float* y, float alpha, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Products with the chunk's n x n lower-triangular matrices (P, dP) as two GEMMs each, over the
// row halves [0, h) and [h, n), so that the zero upper-right quarter is never multiplied.
// out[n, N] = alpha L B + beta out.
void lower_times(int64_t n, int64_t N, float alpha, const float* L, int64_t ldl, const float* B,
                 int64_t ldb, float beta, float* out, int64_t ldo) {
  const int64_t h = n / 2;
  gemm(false, false, h, N, h, alpha, L, ldl, B, ldb, beta, out, ldo);
  gemm(false, false, n - h, N, n, alpha, L + h * ldl, ldl, B, ldb, beta, out + h * ldo, ldo);
}
// out[n, N] = alpha L^T B + beta out.
void lower_transposed_times(int64_t n, int64_t N, float alpha, const float* L, int64_t ldl,
                            const float* B, int64_t ldb, float beta, float* out, int64_t ldo) {
  const int64_t h = n / 2;
  gemm(true, false, h, N, n, alpha, L, ldl, B, ldb, beta, out, ldo);
  gemm(true, false, n - h, N, n - h, alpha, L + h * ldl + h, ldl, B + h * ldb, ldb, beta,
       out + h * ldo, ldo);
}
// The lower triangle of out[n, n] = alpha A B^T (A, B [n, K]); of the upper right quarter
// nothing is written.
void lower_of_product(int64_t n, int64_t K, float alpha, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* out, int64_t ldo) {
  const int64_t h = n / 2;
  gemm(false, true, h, h, K, alpha, A, lda, B, ldb, 0.0f, out, ldo);
  gemm(false, true, n - h, n, K, alpha, A + h * lda, lda, B, ldb, 0.0f, out + h * ldo, ldo);
}

// One head's rows (the head chosen by select()), and the decay factors and scratch of the chunk
// loaded last. `intra`: with the intra-chunk scores (outputs, gradients), not only the states.
class HeadChunks {
 public:
  HeadChunks(const GlrDims& d, bool intra) : d_(d), gw_(d.vector_decay ? d.dk : 1) {
    const int64_t C = d.chunk, K = d.dk;
    b_.resize(C * gw_);
    gamma_.resize(gw_);
    eq_.resize(C * gw_);
    ek_.resize(C * gw_);
    egamma_.resize(gw_);
    qd_.resize(C * K);
    kd_.resize(C * K);
    if (d.vector_decay) {
      a_.resize(C * K);
      er_.resize(C * K);
      ej_.resize(C * K);
      e_.resize(2 * K);
    }
    if (!intra) return;
    p_.resize(C * C);
    if (d.vector_decay) {
      kt_.resize(C * K);
      const int64_t blocks = (C + kSub - 1) / kSub;
      stage_.resize(kSub * blocks * (blocks - 1) / 2 * K);
      qt_.resize(kSub * K);
      tmp_.resize(C * K);
      dkt_.resize(C * K);
    }
  }

  void select(int64_t h) {
    h_ = h;
    hg_ = h / (d_.H / d_.Hg);
  }

  int64_t chunks() const { return (d_.T + d_.chunk - 1) / d_.chunk; }
  int64_t group() const { return hg_; }
  int64_t start(int64_t c) const { return c * d_.chunk; }
  int64_t rows(int64_t c) const { return std::min(d_.chunk, d_.T - start(c)); }
  int64_t qk_ld() const { return d_.Hg * d_.dk; }
  int64_t v_ld() const { return d_.H * d_.dv; }
  const float* qk_rows(const float* x, int64_t c) const {
    return x + (start(c) * d_.Hg + hg_) * d_.dk;
  }
  const float* v_rows(const float* v, int64_t c) const {
    return v + start(c) * v_ld() + h_ * d_.dv;
  }
  float* v_rows(float* v, int64_t c) const { return v + start(c) * v_ld() + h_ * d_.dv; }

  // The cumulative decay of chunk c and its inter-chunk factors eq = e^b, ek = e^{gamma - b},
  // e^gamma; with `intra` (vector decay) also kt = k ej of the scores (k needed then).
  void load(int64_t c, const float* g, const float* k, bool intra) {
    n_ = rows(c);
    const int64_t c0 = start(c), G = gw_;
    for (int64_t r = 0; r < n_; ++r) {
      const float* gr = g + ((c0 + r) * d_.H + h_) * G;
      double* br = &b_[r * G];
      if (r == 0) {
        for (int64_t i = 0; i < G; ++i) br[i] = gr[i];
        continue;
      }
      const double* prev = br - G;
#pragma omp simd
      for (int64_t i = 0; i < G; ++i) br[i] = prev[i] + gr[i];
    }
    std::copy(&b_[(n_ - 1) * G], &b_[(n_ - 1) * G] + G, gamma_.begin());
    for (int64_t i = 0; i < G; ++i) egamma_[i] = decay(gamma_[i], 0.0);
    if (!d_.vector_decay) {
      for (int64_t r = 0; r < n_; ++r) {
        eq_[r] = decay(b_[r], 0.0);
        ek_[r] = decay(gamma_[0], b_[r]);
      }
      return;
    }
    // Vector decay: the tokens' own factors a = e^g, and per block of kSub rows (m = R0 - 1 the
    // row before it, mJ its last row) er_r = e^{b_r - b_m} and ej_j = e^{b_mJ - b_j} as running
    // products of them, forwards from m and backwards from mJ, as the diagonal's decays are;
    // then eq = e^{b_m} er and ek = e^{gamma - b_mJ} ej, one exponential per block and channel.
    const int64_t K = d_.dk;
    for (int64_t r = 0; r < n_; ++r) {
      const float* gr = g + ((c0 + r) * d_.H + h_) * K;
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) a_[r * K + i] = fast_exp(gr[i]);
    }
    float* ref = e_.data();
    for (int64_t R0 = 0; R0 < n_; R0 += kSub) {
      const int64_t end = std::min(n_, R0 + kSub);
      copy_row(&er_[R0 * K], &a_[R0 * K], K);
      for (int64_t r = R0 + 1; r < end; ++r) mul(&er_[r * K], &er_[(r - 1) * K], &a_[r * K], K);
      const double* bm = &b_[(R0 ? R0 - 1 : 0) * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) ref[i] = R0 ? decay(bm[i], 0.0) : 1.0f;
      for (int64_t r = R0; r < end; ++r) mul(&eq_[r * K], &er_[r * K], ref, K);
      std::fill(&ej_[(end - 1) * K], &ej_[(end - 1) * K] + K, 1.0f);
      for (int64_t j = end - 2; j >= R0; --j)
        mul(&ej_[j * K], &ej_[(j + 1) * K], &a_[(j + 1) * K], K);
      const double* bl = &b_[(end - 1) * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) ref[i] = decay(gamma_[i], bl[i]);
      for (int64_t j = R0; j < end; ++j) mul(&ek_[j * K], &ej_[j * K], ref, K);
      if (intra)
        for (int64_t j = R0; j < end; ++j)
          mul(&kt_[j * K], qk_rows(k, c) + j * qk_ld(), &ej_[j * K], K);
    }
  }

  // qd = q * e^b and kd = k * e^{gamma - b} over the loaded chunk's rows.
  void decayed_q(const float* q, int64_t c) {
    scale_rows(qd_.data(), qk_rows(q, c), qk_ld(), eq_.data());
  }
  void decayed_k(const float* k, int64_t c) {
    scale_rows(kd_.data(), qk_rows(k, c), qk_ld(), ek_.data());
  }

  // p = intra-chunk scores P (lower triangle, diagonal included; zero above). A scalar decay
  // takes the group's Q K^T (qk, lower triangle, rows of `chunk`) and masks it with L.
  void scores(const float* q, const float* k, int64_t c, const float* qk) {
    const int64_t C = d_.chunk, K = d_.dk, n = n_;
    const float* qc = qk_rows(q, c);
    const float* kc = qk_rows(k, c);
    if (!d_.vector_decay) {
      for (int64_t r = 0; r < n; ++r) {
        float* pr = &p_[r * C];
        const float* sr = qk + r * C;
        const double br = b_[r];
#pragma omp simd
        for (int64_t j = 0; j <= r; ++j) pr[j] = sr[j] * decay(br, b_[j]);
        std::fill(pr + r + 1, pr + n, 0.0f);
      }
      return;
    }
    for (int64_t r = 0; r < n; ++r) std::fill(&p_[r * C], &p_[r * C] + n, 0.0f);
    for (int64_t R0 = 0; R0 < n; R0 += kSub) {
      const int64_t rn = std::min(kSub, n - R0);
      diagonal_scores(qc, kc, R0, rn);
      if (R0 == 0) continue;
      const float* stage = stage_earlier(qc, R0, rn, true);
      gemm(false, true, rn, R0, K, 1.0f, qt_.data(), K, stage, K, 0.0f, &p_[R0 * C], C);
    }
  }

  // Scalar decay: dP (lower triangle, in p_) times L in place: the gradient of Q K^T, whose
  // products with K and Q are the intra parts of dq and dk (made once per group).
  void mask_scores_gradient() {
    const int64_t C = d_.chunk;
    for (int64_t r = 0; r < n_; ++r) {
      float* pr = &p_[r * C];
      const double br = b_[r];
#pragma omp simd
      for (int64_t j = 0; j <= r; ++j) pr[j] *= decay(br, b_[j]);
    }
  }

  // Vector decay: dq_c += intra part of dq and dk_c += intra part of dk, from dP (lower
  // triangle) in p_.
  void scores_backward(const float* q, const float* k, int64_t c, float* dq_c, float* dk_c) {
    const int64_t C = d_.chunk, K = d_.dk, n = n_;
    const float* qc = qk_rows(q, c);
    const float* kc = qk_rows(k, c);
    // dkt: the gradient with respect to kt (k relative to its own block's last row), collected
    // from every later query block, then times that factor into dk.
    std::fill(dkt_.begin(), dkt_.begin() + n * K, 0.0f);
    for (int64_t R0 = 0; R0 < n; R0 += kSub) {
      const int64_t rn = std::min(kSub, n - R0);
      diagonal_backward(qc, kc, R0, rn, dq_c, dk_c);
      if (R0 == 0) continue;
      const float* stage = stage_earlier(qc, R0, rn, false);
      // dq_R += er * (dP_R,<R0 stage)
      gemm(false, false, rn, K, R0, 1.0f, &p_[R0 * C], C, stage, K, 0.0f, tmp_.data(), K);
      for (int64_t r = 0; r < rn; ++r) {
        float* dqr = &dq_c[(R0 + r) * K];
        const float* t = &tmp_[r * K];
        const float* e = &er_[(R0 + r) * K];
#pragma omp simd
        for (int64_t i = 0; i < K; ++i) dqr[i] += t[i] * e[i];
      }
      // dkt_j += e^{b_m - b_mJ} * (dP_R,<R0^T qt)
      gemm(true, false, R0, K, rn, 1.0f, &p_[R0 * C], C, qt_.data(), K, 0.0f, tmp_.data(), K);
      for (int64_t J0 = 0; J0 < R0; J0 += kSub) {
        const float* f = block_factor(R0, J0);
        for (int64_t j = J0; j < J0 + kSub; ++j) {
          float* out = &dkt_[j * K];
          const float* t = &tmp_[j * K];
#pragma omp simd
          for (int64_t i = 0; i < K; ++i) out[i] += t[i] * f[i];
        }
      }
    }
    // kt = k * ej: dk += dkt * ej (every block but the last is an earlier one).
    for (int64_t j = 0; j < (n - 1) / kSub * kSub; ++j) {
      float* dkj = &dk_c[j * K];
      const float* t = &dkt_[j * K];
      const float* e = &ej_[j * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) dkj[i] += t[i] * e[i];
    }
  }

  double b(int64_t r, int64_t i) const { return b_[r * gw_ + (d_.vector_decay ? i : 0)]; }
  const float* eq() const { return eq_.data(); }
  const float* ek() const { return ek_.data(); }
  const float* egamma() const { return egamma_.data(); }
  const float* qd() const { return qd_.data(); }
  const float* kd() const { return kd_.data(); }
  float* p() { return p_.data(); }

  // out[r, :] = x[r, :] * the row's factor (eq or ek: per channel, or one per row for a scalar
  // decay) over the loaded chunk's rows; out is contiguous [n, dk], x has rows ld apart and may
  // be out itself.
  void scale_rows(float* out, const float* x, int64_t ld, const float* factor) const {
    const int64_t K = d_.dk;
    for (int64_t r = 0; r < n_; ++r) {
      const float* xr = x + r * ld;
      if (d_.vector_decay) {
        mul(out + r * K, xr, factor + r * K, K);
      } else {
        const float f = factor[r];
#pragma omp simd
        for (int64_t i = 0; i < K; ++i) out[r * K + i] = xr[i] * f;
      }
    }
  }

 private:
  // e^{b_m - b_mJ} for query block R0 (m = R0 - 1) and key block J0 (mJ its last row): 1 when J
  // is the block just before R. Into e_ (K floats).
  const float* block_factor(int64_t R0, int64_t J0) {
    const int64_t K = d_.dk, mJ = J0 + kSub - 1, m = R0 - 1;
    const double* bm = &b_[m * K];
    const double* bj = &b_[mJ * K];
#pragma omp simd
    for (int64_t i = 0; i < K; ++i) e_[i] = mJ == m ? 1.0f : decay(bm[i], bj[i]);
    return e_.data();
  }

  // qt = q_R * er_R (rn rows) and the stage of block R: the keys of every row before R0
  // relative to m = R0 - 1, kt_j * e^{b_m - b_mJ}. The scores make the stages of the loaded
  // chunk (fresh) and its gradient reuses them.
  const float* stage_earlier(const float* qc, int64_t R0, int64_t rn, bool fresh) {
    const int64_t K = d_.dk, R = R0 / kSub;
    for (int64_t r = 0; r < rn; ++r)
      mul(&qt_[r * K], qc + (R0 + r) * qk_ld(), &er_[(R0 + r) * K], K);
    float* stage = &stage_[kSub * R * (R - 1) / 2 * K];
    if (fresh)
      for (int64_t J0 = 0; J0 < R0; J0 += kSub) {
        const float* f = block_factor(R0, J0);
        for (int64_t j = J0; j < J0 + kSub; ++j) mul(&stage[j * K], &kt_[j * K], f, K);
      }
    return stage;
  }

  // The block R with itself: for each key row j, e^{b_r - b_j} grows as a running product over
  // the rows r > j of the block.
  // (Both are instantiated for the usual key widths, so that the rows stay in registers.)
  void diagonal_scores(const float* qc, const float* kc, int64_t R0, int64_t rn) {
    switch (d_.dk) {
      case 64: return diagonal_scores_k<64>(qc, kc, R0, rn);
      case 128: return diagonal_scores_k<128>(qc, kc, R0, rn);
      default: return diagonal_scores_k<0>(qc, kc, R0, rn);
    }
  }
  void diagonal_backward(const float* qc, const float* kc, int64_t R0, int64_t rn, float* dq_c,
                         float* dk_c) {
    switch (d_.dk) {
      case 64: return diagonal_backward_k<64>(qc, kc, R0, rn, dq_c, dk_c);
      case 128: return diagonal_backward_k<128>(qc, kc, R0, rn, dq_c, dk_c);
      default: return diagonal_backward_k<0>(qc, kc, R0, rn, dq_c, dk_c);
    }
  }

  template <int64_t KC>  // the key width, or 0: d_.dk
  void diagonal_scores_k(const float* qc, const float* kc, int64_t R0, int64_t rn) {
    const int64_t C = d_.chunk, K = KC ? KC : d_.dk;
    float* w = e_.data();  // k_j * e^{b_r - b_j}
    for (int64_t j = R0; j < R0 + rn; ++j) {
      const float* kj = kc + j * qk_ld();
      const float* qj = qc + j * qk_ld();
      float s0 = 0.0f;
#pragma omp simd reduction(+ : s0)
      for (int64_t i = 0; i < K; ++i) {
        w[i] = kj[i];
        s0 += qj[i] * kj[i];
      }
      p_[j * C + j] = s0;
      for (int64_t r = j + 1; r < R0 + rn; ++r) {
        const float* ar = &a_[r * K];
        const float* qr = qc + r * qk_ld();
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < K; ++i) {
          w[i] *= ar[i];
          s += qr[i] * w[i];
        }
        p_[r * C + j] = s;
      }
    }
  }

  template <int64_t KC>
  void diagonal_backward_k(const float* qc, const float* kc, int64_t R0, int64_t rn, float* dq_c,
                           float* dk_c) {
    const int64_t C = d_.chunk, K = KC ? KC : d_.dk;
    float* e = e_.data();  // e^{b_r - b_j}
    float* dkj = e + K;    // dk_j's intra-block sum
    for (int64_t j = R0; j < R0 + rn; ++j) {
      const float* kj = kc + j * qk_ld();
      const float* qj = qc + j * qk_ld();
      const float dpj = p_[j * C + j];
      float* dqj = &dq_c[j * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) {  // r = j: e = 1
        e[i] = 1.0f;
        dqj[i] += dpj * kj[i];
        dkj[i] = dpj * qj[i];
      }
      for (int64_t r = j + 1; r < R0 + rn; ++r) {
        const float dp = p_[r * C + j];
        const float* ar = &a_[r * K];
        const float* qr = qc + r * qk_ld();
        float* dqr = &dq_c[r * K];
#pragma omp simd
        for (int64_t i = 0; i < K; ++i) {
          e[i] *= ar[i];
          const float we = dp * e[i];
          dqr[i] += we * kj[i];
          dkj[i] += we * qr[i];
        }
      }
      axpy(&dk_c[j * K], 1.0f, dkj, K);
    }
  }

  const GlrDims& d_;
  const int64_t gw_;
  int64_t h_ = 0, hg_ = 0, n_ = 0;
  std::vector<double> b_, gamma_;
  std::vector<float> eq_, ek_, egamma_, qd_, kd_, p_, a_, er_, ej_, kt_, stage_, qt_, tmp_, dkt_,
      e_;
};

// S = Diag(e^gamma) S + alpha * x^T y over the loaded chunk's rows: the state moving forward
// (x = k e^{gamma - b}, y = v, alpha = 1) and its gradient moving backward (x = q e^b,
// y = dout, alpha = scale).
void decay_and_accumulate(const HeadChunks& hc, const GlrDims& d, float* S, const float* x,
                          const float* y_rows, float alpha, int64_t n) {
  const float* eg = hc.egamma();
  for (int64_t i = 0; i < d.dk; ++i) {
    const float a = eg[d.vector_decay ? i : 0];
#pragma omp simd
    for (int64_t j = 0; j < d.dv; ++j) S[i * d.dv + j] *= a;
  }
  gemm(true, false, d.dk, d.dv, n, alpha, x, d.dk, y_rows, hc.v_ld(), 1.0f, S, d.dv);
}

void advance_state(HeadChunks& hc, const GlrDims& d, const float* k, const float* v, int64_t c,
                   float* S) {
  hc.decayed_k(k, c);
  decay_and_accumulate(hc, d, S, hc.kd(), hc.v_rows(v, c), 1.0f, hc.rows(c));
}

void retreat_state_gradient(HeadChunks& hc, const GlrDims& d, const float* q, const float* dout,
                            int64_t c, float* dS) {
  hc.decayed_q(q, c);
  decay_and_accumulate(hc, d, dS, hc.qd(), hc.v_rows(dout, c), d.scale, hc.rows(c));
}

int64_t state_size(const GlrDims& d) { return d.dk * d.dv; }

// suffix = sum_v S * dS (per channel; summed over channels too for a scalar decay), in double.
void anchor_gate_gradient(const GlrDims& d, const float* S, const float* dS, double* suffix) {
  std::fill(suffix, suffix + (d.vector_decay ? d.dk : 1), 0.0);
  for (int64_t i = 0; i < d.dk; ++i) {
    const float* s = S + i * d.dv;
    const float* ds = dS + i * d.dv;
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < d.dv; ++j) acc += static_cast<double>(s[j]) * ds[j];
    suffix[d.vector_decay ? i : 0] += acc;
  }
}

// Heads [first, last) of thread tid in a team: contiguous blocks, so that heads of one q/k group
// meet in one thread, which walks the chunks in order and, within a chunk, its heads: the
// chunk's q and k rows stay in cache across the group's heads, and with a scalar decay its
// scores Q K^T are computed once for all of them.
struct HeadBlock {
  int64_t first, last;
  HeadBlock(int64_t H, int tid, int team) : first(H * tid / team), last(H * (tid + 1) / team) {}
};

// Where a thread's dq, dk rows of a q/k group go: straight into dq, dk [T, Hg, dk] when the
// thread holds every head of the group, else into the thread's own [T, 2, dk] buffer for it,
// added to the other threads' in thread order at the end (a group's heads may straddle
// blocks; only the first and last group of a block can).
class GroupOutputs {
 public:
  GroupOutputs(const GlrDims& d, int team)
      : d_(d), team_(team), first_(d.Hg), last_(d.Hg), own_(static_cast<size_t>(team) * 2) {
    const int64_t per = d.H / d.Hg;
    for (int tid = team - 1; tid >= 0; --tid) {
      const HeadBlock block(d.H, tid, team);
      for (int64_t h = block.first; h < block.last; ++h) first_[h / per] = tid;
    }
    for (int tid = 0; tid < team; ++tid) {
      const HeadBlock block(d.H, tid, team);
      for (int64_t h = block.first; h < block.last; ++h) last_[h / per] = tid;
    }
  }
  bool shared(int64_t hg) const { return first_[hg] != last_[hg]; }

  // dq and dk rows of group hg for thread tid: row 0 of each and the leading dimension.
  struct Rows {
    float* dq;
    float* dk;
    int64_t ld;
  };
  // Makes thread tid's buffers for its shared groups (uninitialised: every row is written by
  // the group's first head on the thread before any other adds to it); a thread calls it for
  // itself.
  void prepare(int tid, const HeadBlock& block) {
    if (block.first >= block.last) return;
    const int64_t per = d_.H / d_.Hg;
    for (int64_t hg : {block.first / per, (block.last - 1) / per})
      if (shared(hg) && !slot(tid, hg)) slot(tid, hg).reset(new float[2 * d_.T * d_.dk]);
  }
  Rows rows(int tid, int64_t hg, float* dq, float* dk) {
    if (!shared(hg)) return {dq + hg * d_.dk, dk + hg * d_.dk, d_.Hg * d_.dk};
    float* b = slot(tid, hg).get();
    return {b, b + d_.dk, 2 * d_.dk};
  }
  // dq, dk of the shared groups = the sum of their threads' buffers, in thread order. Called by
  // every thread of the team (a worksharing loop).
  void reduce(float* dq, float* dk) {
    for (int64_t hg = 0; hg < d_.Hg; ++hg) {
      if (!shared(hg)) continue;
      std::vector<const float*> bufs;  // in thread order; not a thread between them with no heads
      for (int tid = first_[hg]; tid <= last_[hg]; ++tid)
        if (holds(tid, hg)) bufs.push_back(slot(tid, hg).get());
#pragma omp for schedule(static)
      for (int64_t t = 0; t < d_.T; ++t)
        for (int64_t i = 0; i < d_.dk; ++i) {
          float a = 0.0f, b = 0.0f;
          for (const float* buf : bufs) {
            a += buf[2 * t * d_.dk + i];
            b += buf[(2 * t + 1) * d_.dk + i];
          }
          dq[(t * d_.Hg + hg) * d_.dk + i] = a;
          dk[(t * d_.Hg + hg) * d_.dk + i] = b;
        }
    }
  }

 private:
  bool holds(int tid, int64_t hg) const {
    const HeadBlock block(d_.H, tid, team_);
    const int64_t per = d_.H / d_.Hg;
    return block.first < block.last && block.first < (hg + 1) * per && block.last > hg * per;
  }
  // A thread's first and last group (the only ones it can share) have a slot each.
  std::unique_ptr<float[]>& slot(int tid, int64_t hg) {
    return own_[2 * tid + (first_[hg] == tid ? 1 : 0)];
  }
  const GlrDims& d_;
  const int team_;
  std::vector<int> first_, last_;  // per group: the first and last thread holding its heads
  std::vector<std::unique_ptr<float[]>> own_;
};

// Q K^T of one group's chunk (lower triangle; rows of `chunk`), for the scalar decay.
class GroupScores {
 public:
  explicit GroupScores(const GlrDims& d) : d_(d) {
    if (!d.vector_decay) qk_.resize(d.chunk * d.chunk);
  }
  const float* get(const HeadChunks& hc, const float* q, const float* k, int64_t c) {
    if (d_.vector_decay) return nullptr;
    if (hg_ != hc.group() || c_ != c) {
      lower_of_product(hc.rows(c), d_.dk, 1.0f, hc.qk_rows(q, c), hc.qk_ld(), hc.qk_rows(k, c),
                       hc.qk_ld(), qk_.data(), d_.chunk);
      hg_ = hc.group();
      c_ = c;
    }
    return qk_.data();
  }

 private:
  const GlrDims& d_;
  std::vector<float> qk_;
  int64_t hg_ = -1, c_ = -1;
};

// Scalar decay: the sum over a group's heads of the masked score gradients dP * L, whose
// products with K and Q are the intra-chunk parts of the group's dq and dk (one GEMM each per
// chunk and group instead of per head).
class GroupScoreGradient {
 public:
  explicit GroupScoreGradient(const GlrDims& d) : d_(d) {
    if (!d.vector_decay) acc_.resize(d.chunk * d.chunk);
  }
  void add(const float* dpl, int64_t hg, int64_t n) {
    const int64_t C = d_.chunk;
    if (hg != hg_) std::fill(acc_.begin(), acc_.end(), 0.0f);
    hg_ = hg;
    for (int64_t r = 0; r < n; ++r) axpy(&acc_[r * C], 1.0f, dpl + r * C, r + 1);
  }
  // The group's dq, dk rows of the chunk += acc K, acc^T Q; then empty.
  void flush(const HeadChunks& hc, const float* q, const float* k, int64_t c,
             GroupOutputs::Rows out) {
    if (hg_ < 0) return;
    // (acc is zero above its diagonal: zeroed when the group started, added to below it only.)
    const int64_t n = hc.rows(c), C = d_.chunk, ld = hc.qk_ld(),
                  row = (hc.start(c) * d_.Hg + hg_) * d_.dk;
    const int64_t out_row = hc.start(c) * out.ld;
    lower_times(n, d_.dk, 1.0f, acc_.data(), C, k + row, ld, 1.0f, out.dq + out_row, out.ld);
    lower_transposed_times(n, d_.dk, 1.0f, acc_.data(), C, q + row, ld, 1.0f, out.dk + out_row,
                           out.ld);
    hg_ = -1;
  }
  int64_t group() const { return hg_; }

 private:
  const GlrDims& d_;
  std::vector<float> acc_;
  int64_t hg_ = -1;
};

}  // namespace

void glr_forward(float* o, float* h_final, float* states, const float* q, const float* k,
                 const float* v, const float* g, const float* h0, const GlrDims& d) {
  const int64_t SS = state_size(d);
#pragma omp parallel
  {
    const HeadBlock block(d.H, omp_get_thread_num(), omp_get_num_threads());
    HeadChunks hc(d, o != nullptr);
    std::vector<std::vector<float>> S;
    for (int64_t h = block.first; h < block.last; ++h) {
      S.emplace_back(SS, 0.0f);
      if (h0) std::memcpy(S.back().data(), h0 + h * SS, SS * sizeof(float));
    }
    GroupScores group_scores(d);
    const int64_t nc = hc.chunks();
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t h = block.first; h < block.last; ++h) {
        hc.select(h);
        float* Sh = S[h - block.first].data();
        if (states) std::memcpy(states + (c * d.H + h) * SS, Sh, SS * sizeof(float));
        const int64_t n = hc.rows(c);
        hc.load(c, g, k, o != nullptr);
        if (o) {
          float* oc = hc.v_rows(o, c);
          hc.decayed_q(q, c);
          gemm(false, false, n, d.dv, d.dk, d.scale, hc.qd(), d.dk, Sh, d.dv, 0.0f, oc, hc.v_ld());
          hc.scores(q, k, c, group_scores.get(hc, q, k, c));
          lower_times(n, d.dv, d.scale, hc.p(), d.chunk, hc.v_rows(v, c), hc.v_ld(), 1.0f, oc,
                      hc.v_ld());
        }
        advance_state(hc, d, k, v, c, Sh);
      }
    for (int64_t h = block.first; h < block.last; ++h) {
      const float* Sh = S[h - block.first].data();
      if (states) std::memcpy(states + (nc * d.H + h) * SS, Sh, SS * sizeof(float));
      if (h_final) std::memcpy(h_final + h * SS, Sh, SS * sizeof(float));
    }
  }
}

void glr_backward(float* dq, float* dk, float* dv, float* dg, float* dh0, const float* q,
                  const float* k, const float* v, const float* g, const float* states,
                  const float* dout, const float* dh_final, const GlrDims& d) {
  const int64_t SS = state_size(d), K = d.dk, GW = d.vector_decay ? K : 1;
  // Heads of a group add into the same dq, dk rows.
  const bool accumulate = d.Hg < d.H;
  std::optional<GroupOutputs> team_outputs;

#pragma omp parallel
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const HeadBlock block(d.H, tid, team);
#pragma omp single
    team_outputs.emplace(d, team);
    GroupOutputs& outputs = *team_outputs;
    outputs.prepare(tid, block);
    HeadChunks hc(d, true);
    std::vector<std::vector<float>> dS;
    for (int64_t h = block.first; h < block.last; ++h) {
      dS.emplace_back(SS, 0.0f);
      if (dh_final) std::memcpy(dS.back().data(), dh_final + h * SS, SS * sizeof(float));
    }
    GroupScores group_scores(d);
    GroupScoreGradient group_grad(d);
    std::vector<float> dq_c(d.chunk * K), dk_c(d.chunk * K);
    // The gate gradient's running sum within a chunk, in double; the scalar decay's row and
    // column sums of (dP * L) * Q K^T (= dP * P: the intra parts of q dq and k dk).
    std::vector<double> suffix(GW), row_sum(d.chunk), col_sum(d.chunk);

    for (int64_t c = hc.chunks() - 1; c >= 0; --c) {
      for (int64_t h = block.first; h < block.last; ++h) {
        hc.select(h);
        float* dSh = dS[h - block.first].data();
        const int64_t hg = hc.group(), n = hc.rows(c), c0 = hc.start(c);
        if (!d.vector_decay && group_grad.group() >= 0 && group_grad.group() != hg)
          group_grad.flush(hc, q, k, c, outputs.rows(tid, group_grad.group(), dq, dk));
        const GroupOutputs::Rows out = outputs.rows(tid, hg, dq, dk);
        // dg's anchor at the chunk's end: sum_v S_next * dS_next, which equals the suffix sum
        // over all later tokens (plus the final-state term) but is computed directly.
        anchor_gate_gradient(d, states + ((c + 1) * d.H + h) * SS, dSh, suffix.data());
        const float* s_prev = states + (c * d.H + h) * SS;
        const float* do_c = hc.v_rows(dout, c);
        const float* v_c = hc.v_rows(v, c);
        const float* q_c = hc.qk_rows(q, c);
        const float* k_c = hc.qk_rows(k, c);
        hc.load(c, g, k, true);
        hc.decayed_k(k, c);
        const float* qk = group_scores.get(hc, q, k, c);
        hc.scores(q, k, c, qk);
        // dv = scale P^T dO + kd dS
        float* dv_c = hc.v_rows(dv, c);
        lower_transposed_times(n, d.dv, d.scale, hc.p(), d.chunk, do_c, hc.v_ld(), 0.0f, dv_c,
                               hc.v_ld());
        gemm(false, false, n, d.dv, K, 1.0f, hc.kd(), K, dSh, d.dv, 1.0f, dv_c, hc.v_ld());
        // dq = e^b * (scale dO S_prev^T), dk = e^{gamma - b} * (V dS^T), then the intra parts
        gemm(false, true, n, K, d.dv, d.scale, do_c, hc.v_ld(), s_prev, d.dv, 0.0f, dq_c.data(), K);
        gemm(false, true, n, K, d.dv, 1.0f, v_c, hc.v_ld(), dSh, d.dv, 0.0f, dk_c.data(), K);
        hc.scale_rows(dq_c.data(), dq_c.data(), K, hc.eq());
        hc.scale_rows(dk_c.data(), dk_c.data(), K, hc.ek());
        // dP = scale dO V^T, lower triangle (nothing reads above it)
        float* dp = hc.p();
        lower_of_product(n, d.dv, d.scale, do_c, hc.v_ld(), v_c, hc.v_ld(), dp, d.chunk);
        if (d.vector_decay) {
          hc.scores_backward(q, k, c, dq_c.data(), dk_c.data());
        } else {
          hc.mask_scores_gradient();
          // q_r . dq_intra,r - k_r . dk_intra,r = sum_j M_rj - sum_r' M_r'r, M = (dP * L) * Q K^T
          std::fill(row_sum.begin(), row_sum.end(), 0.0);
          std::fill(col_sum.begin(), col_sum.end(), 0.0);
          for (int64_t r = 0; r < n; ++r) {
            const float* dpr = dp + r * d.chunk;
            const float* sr = qk + r * d.chunk;
            double acc = 0.0;
            for (int64_t j = 0; j <= r; ++j) {
              const double m = static_cast<double>(dpr[j]) * sr[j];
              acc += m;
              col_sum[j] += m;
            }
            row_sum[r] = acc;
          }
          group_grad.add(dp, hg, n);
        }
        // dg: suffix sums of q * dq - k * dk over this head's own gradients, from the anchor
        for (int64_t r = n - 1; r >= 0; --r) {
          const float* qr = q_c + r * hc.qk_ld();
          const float* kr = k_c + r * hc.qk_ld();
          const float* dqr = &dq_c[r * K];
          const float* dkr = &dk_c[r * K];
          if (d.vector_decay) {
            float* dg_r = dg + ((c0 + r) * d.H + h) * K;
            double* sfx = suffix.data();
#pragma omp simd
            for (int64_t i = 0; i < K; ++i) {
              sfx[i] += static_cast<double>(qr[i]) * dqr[i] - static_cast<double>(kr[i]) * dkr[i];
              dg_r[i] = static_cast<float>(sfx[i]);
            }
          } else {
            double term = row_sum[r] - col_sum[r];
#pragma omp simd reduction(+ : term)
            for (int64_t i = 0; i < K; ++i)
              term += static_cast<double>(qr[i]) * dqr[i] - static_cast<double>(kr[i]) * dkr[i];
            suffix[0] += term;
            dg[(c0 + r) * d.H + h] = static_cast<float>(suffix[0]);
          }
        }
        // The group's first head on this thread writes its rows, the others add to them (and
        // so does the scalar decay's intra part, flushed after the group's heads).
        const bool first_of_group = h == block.first || h % (d.H / d.Hg) == 0;
        for (int64_t r = 0; r < n; ++r) {
          float* dqr = out.dq + (c0 + r) * out.ld;
          float* dkr = out.dk + (c0 + r) * out.ld;
          if (accumulate && !first_of_group) {
            axpy(dqr, 1.0f, &dq_c[r * K], K);
            axpy(dkr, 1.0f, &dk_c[r * K], K);
          } else {
            copy_row(dqr, &dq_c[r * K], K);
            copy_row(dkr, &dk_c[r * K], K);
          }
        }
        retreat_state_gradient(hc, d, q, dout, c, dSh);
      }
      if (!d.vector_decay && group_grad.group() >= 0)
        group_grad.flush(hc, q, k, c, outputs.rows(tid, group_grad.group(), dq, dk));
    }
    if (dh0)
      for (int64_t h = block.first; h < block.last; ++h)
        std::memcpy(dh0 + h * SS, dS[h - block.first].data(), SS * sizeof(float));
#pragma omp barrier
    outputs.reduce(dq, dk);
  }
}

void glr_chunk_summary(float* s_loc, float* gamma, const float* k, const float* v, const float* g,
                       const GlrDims& d) {
  const int64_t SS = state_size(d), GW = d.vector_decay ? d.dk : 1;
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.H; ++h) {
    HeadChunks hc(d, false);
    hc.select(h);
    float* S = s_loc + h * SS;
    std::fill(S, S + SS, 0.0f);
    // The total decay over the whole input (one zigzag unit), in double: units of 128K tokens sum
    // 128K terms.
    std::vector<double> total(GW, 0.0);
    for (int64_t c = 0; c < hc.chunks(); ++c) {
      hc.load(c, g, k, false);
      advance_state(hc, d, k, v, c, S);
      for (int64_t i = 0; i < GW; ++i) total[i] += hc.b(hc.rows(c) - 1, i);
    }
    for (int64_t i = 0; i < GW; ++i) gamma[h * GW + i] = static_cast<float>(total[i]);
  }
}

void glr_state_gradient(float* ds, const float* q, const float* g, const float* dout,
                        const GlrDims& d) {
  const int64_t SS = state_size(d);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.H; ++h) {
    HeadChunks hc(d, false);
    hc.select(h);
    float* dS = ds + h * SS;
    std::fill(dS, dS + SS, 0.0f);
    for (int64_t c = hc.chunks() - 1; c >= 0; --c) {
      hc.load(c, g, nullptr, false);
      retreat_state_gradient(hc, d, q, dout, c, dS);
    }
  }
}

void glr_state_scan(float* out, const float* s_loc, const float* gamma, int64_t n, int64_t H,
                    int64_t dk, int64_t dv, bool vector_decay, bool reverse) {
  const int64_t SS = H * dk * dv, GW = vector_decay ? dk : 1;
  float* first = out + (reverse ? n : 0) * SS;
  std::fill(first, first + SS, 0.0f);
  for (int64_t step = 0; step < n; ++step) {
    const int64_t c = reverse ? n - 1 - step : step;
    const float* from = out + (reverse ? c + 1 : c) * SS;
    float* to = out + (reverse ? c : c + 1) * SS;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < dk; ++i) {
        const float a = fast_exp(gamma[(c * H + h) * GW + (vector_decay ? i : 0)]);
        for (int64_t j = 0; j < dv; ++j) {
          const int64_t e = (h * dk + i) * dv + j;
          to[e] = a * from[e] + s_loc[c * SS + e];
        }
      }
  }
}

}  // namespace rt::cpu
