// The gated linear recurrence (GLR), chunked, on the CPU (DESIGN §3):
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = scale * S_t^T q_t
// Per head, per chunk of C tokens with local cumulative decay b_r = sum_{s<=r} g_s, gamma = b_{C-1}:
//   O       = scale * ((Q * e^b) S_prev + P V),   P_rj = sum_d q_rd k_jd e^{b_rd - b_jd} (j <= r)
//   S_next  = Diag(e^gamma) S_prev + (K * e^{gamma - b})^T V
// Every exponent is <= 0, and each is formed in double from a cumulative decay kept in double:
// under strong decay b reaches -1e3 within a chunk, where an f32 difference b_r - b_j would
// carry an absolute error of ~1e-4. For the scalar decay (Mamba-2) P = (Q K^T) * L, L_rj = e^{b_r - b_j}:
// GEMMs and one mask. For the vector decay (GLA) P cannot be one GEMM without exponents > 0,
// so the chunk is cut into sub-blocks of kSub rows: a pair of sub-blocks (R after J) uses the
// last row m of J as reference point, q_r e^{b_r - b_m} and k_j e^{b_m - b_j} (both <= 1); a
// sub-block with itself is computed pair by pair.
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
// Heads run in parallel. Query/key groups (Hg < H, Mamba-2's ngroups) share q and k between
// heads: their gradients are summed over the group, in per-thread buffers added in thread order.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

namespace {

constexpr int64_t kSub = 16;

// One head's view of the inputs, and the scratch of one chunk.
class HeadChunks {
 public:
  HeadChunks(const GlrDims& d, int64_t h) : d_(d), h_(h), hg_(h / (d.H / d.Hg)) {
    const int64_t C = d.chunk, K = d.dk;
    q_.resize(C * K);
    k_.resize(C * K);
    b_.resize(d.vector_decay ? C * K : C);
    gamma_.resize(d.vector_decay ? K : 1);
    qd_.resize(C * K);
    kd_.resize(C * K);
    p_.resize(C * C);
    qt_.resize(kSub * K);
    kt_.resize(C * K);
    tmp_.resize(kSub * K);
  }

  int64_t chunks() const { return (d_.T + d_.chunk - 1) / d_.chunk; }
  int64_t start(int64_t c) const { return c * d_.chunk; }
  int64_t rows(int64_t c) const { return std::min(d_.chunk, d_.T - start(c)); }
  int64_t q_ld() const { return d_.Hg * d_.dk; }
  int64_t v_ld() const { return d_.H * d_.dv; }
  const float* v_rows(const float* v, int64_t c) const { return v + start(c) * v_ld() + h_ * d_.dv; }
  float* v_rows(float* v, int64_t c) const { return v + start(c) * v_ld() + h_ * d_.dv; }

  // Loads q and k rows of chunk c (contiguous [n, dk]) and the cumulative decay b, gamma.
  void load(int64_t c, const float* q, const float* k, const float* g) {
    const int64_t n = rows(c), K = d_.dk, c0 = start(c);
    for (int64_t r = 0; r < n; ++r) {
      if (q) std::memcpy(&q_[r * K], q + ((c0 + r) * d_.Hg + hg_) * K, K * sizeof(float));
      if (k) std::memcpy(&k_[r * K], k + ((c0 + r) * d_.Hg + hg_) * K, K * sizeof(float));
    }
    if (d_.vector_decay) {
      for (int64_t r = 0; r < n; ++r) {
        const float* gr = g + ((c0 + r) * d_.H + h_) * K;
        double* br = &b_[r * K];
        const double* prev = r ? &b_[(r - 1) * K] : nullptr;
        for (int64_t i = 0; i < K; ++i) br[i] = (prev ? prev[i] : 0.0) + gr[i];
      }
      std::copy(&b_[(n - 1) * K], &b_[(n - 1) * K] + K, gamma_.begin());
    } else {
      double acc = 0.0;
      for (int64_t r = 0; r < n; ++r) b_[r] = acc += g[(c0 + r) * d_.H + h_];
      gamma_[0] = b_[n - 1];
    }
  }

  double b(int64_t r, int64_t i) const { return d_.vector_decay ? b_[r * d_.dk + i] : b_[r]; }
  double gamma(int64_t i) const { return d_.vector_decay ? gamma_[i] : gamma_[0]; }
  // e^{x - y} for two cumulative decays, the difference taken in double.
  static float decay(double x, double y) { return fast_exp(static_cast<float>(x - y)); }

  // qd = q * e^b ; kd = k * e^{gamma - b}   (rows of the loaded chunk)
  void decayed_q(int64_t n) {
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < d_.dk; ++i) qd_[r * d_.dk + i] = q_[r * d_.dk + i] * decay(b(r, i), 0.0);
  }
  void decayed_k(int64_t n) {
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < d_.dk; ++i)
        kd_[r * d_.dk + i] = k_[r * d_.dk + i] * decay(gamma(i), b(r, i));
  }

  // p = intra-chunk scores P (lower triangle, diagonal included; zero above).
  void scores(int64_t n) {
    const int64_t C = d_.chunk, K = d_.dk;
    if (!d_.vector_decay) {
      gemm(false, true, n, n, K, 1.0f, q_.data(), K, k_.data(), K, 0.0f, p_.data(), C);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < n; ++j) p_[r * C + j] = j <= r ? p_[r * C + j] * decay(b_[r], b_[j]) : 0.0f;
      return;
    }
    for (int64_t r = 0; r < n; ++r) std::fill(&p_[r * C], &p_[r * C] + n, 0.0f);
    for (int64_t R = 0; R < n; R += kSub) {
      const int64_t rn = std::min(kSub, n - R);
      diagonal_scores(R, rn);
      for (int64_t J = 0; J < R; J += kSub) {
        reference_pair(R, rn, J);
        gemm(false, true, rn, kSub, K, 1.0f, qt_.data(), K, &kt_[J * K], K, 0.0f, &p_[R * C + J], C);
      }
    }
  }

  // dq_c += intra part of dq and dk_c += intra part of dk, from dP (lower triangle) in p_.
  void scores_backward(int64_t n, float* dq_c, float* dk_c) {
    const int64_t C = d_.chunk, K = d_.dk;
    if (!d_.vector_decay) {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j <= r; ++j) p_[r * C + j] *= decay(b_[r], b_[j]);
      gemm(false, false, n, K, n, 1.0f, p_.data(), C, k_.data(), K, 1.0f, dq_c, K);
      gemm(true, false, n, K, n, 1.0f, p_.data(), C, q_.data(), K, 1.0f, dk_c, K);
      return;
    }
    for (int64_t R = 0; R < n; R += kSub) {
      const int64_t rn = std::min(kSub, n - R);
      diagonal_backward(R, rn, dq_c, dk_c);
      for (int64_t J = 0; J < R; J += kSub) {
        const int64_t m = J + kSub - 1;
        reference_pair(R, rn, J);
        // dq_R += e^{b_R - b_m} * (dP_RJ Kt_J)
        gemm(false, false, rn, K, kSub, 1.0f, &p_[R * C + J], C, &kt_[J * K], K, 0.0f, tmp_.data(), K);
        const double* bm = &b_[m * K];
        for (int64_t r = 0; r < rn; ++r) {
          const double* br = &b_[(R + r) * K];
          float* dqr = &dq_c[(R + r) * K];
          const float* t = &tmp_[r * K];
#pragma omp simd
          for (int64_t i = 0; i < K; ++i) dqr[i] += t[i] * fast_exp(static_cast<float>(br[i] - bm[i]));
        }
        // dk_J += e^{b_m - b_J} * (dP_RJ^T Qt_R)
        gemm(true, false, kSub, K, rn, 1.0f, &p_[R * C + J], C, qt_.data(), K, 0.0f, tmp_.data(), K);
        for (int64_t j = 0; j < kSub; ++j) {
          const double* bj = &b_[(J + j) * K];
          float* dkj = &dk_c[(J + j) * K];
          const float* t = &tmp_[j * K];
#pragma omp simd
          for (int64_t i = 0; i < K; ++i) dkj[i] += t[i] * fast_exp(static_cast<float>(bm[i] - bj[i]));
        }
      }
    }
  }

  const float* qd() const { return qd_.data(); }
  const float* kd() const { return kd_.data(); }
  const float* q() const { return q_.data(); }
  const float* k() const { return k_.data(); }
  float* p() { return p_.data(); }

 private:
  // qt = q_R * e^{b_R - b_m} and kt_J = k_J * e^{b_m - b_J}, m the last row of sub-block J.
  // (Vector decay only: plain pointer loops so that they vectorise.)
  void reference_pair(int64_t R, int64_t rn, int64_t J) {
    const int64_t K = d_.dk;
    const double* bm = &b_[(J + kSub - 1) * K];
    for (int64_t r = 0; r < rn; ++r) {
      const double* br = &b_[(R + r) * K];
      const float* qr = &q_[(R + r) * K];
      float* out = &qt_[r * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) out[i] = qr[i] * fast_exp(static_cast<float>(br[i] - bm[i]));
    }
    for (int64_t j = 0; j < kSub; ++j) {
      const double* bj = &b_[(J + j) * K];
      const float* kj = &k_[(J + j) * K];
      float* out = &kt_[(J + j) * K];
#pragma omp simd
      for (int64_t i = 0; i < K; ++i) out[i] = kj[i] * fast_exp(static_cast<float>(bm[i] - bj[i]));
    }
  }

  void diagonal_scores(int64_t R, int64_t rn) {
    const int64_t C = d_.chunk, K = d_.dk;
    for (int64_t r = R; r < R + rn; ++r) {
      const double* br = &b_[r * K];
      const float* qr = &q_[r * K];
      for (int64_t j = R; j <= r; ++j) {
        const double* bj = &b_[j * K];
        const float* kj = &k_[j * K];
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < K; ++i) s += qr[i] * kj[i] * fast_exp(static_cast<float>(br[i] - bj[i]));
        p_[r * C + j] = s;
      }
    }
  }

  void diagonal_backward(int64_t R, int64_t rn, float* dq_c, float* dk_c) {
    const int64_t C = d_.chunk, K = d_.dk;
    for (int64_t r = R; r < R + rn; ++r) {
      const double* br = &b_[r * K];
      const float* qr = &q_[r * K];
      float* dqr = &dq_c[r * K];
      for (int64_t j = R; j <= r; ++j) {
        const double* bj = &b_[j * K];
        const float* kj = &k_[j * K];
        float* dkj = &dk_c[j * K];
        const float dp = p_[r * C + j];
#pragma omp simd
        for (int64_t i = 0; i < K; ++i) {
          const float w = dp * fast_exp(static_cast<float>(br[i] - bj[i]));
          dqr[i] += w * kj[i];
          dkj[i] += w * qr[i];
        }
      }
    }
  }

  const GlrDims& d_;
  const int64_t h_, hg_;
  std::vector<float> q_, k_, qd_, kd_, p_, qt_, kt_, tmp_;
  std::vector<double> b_, gamma_;
};

// S = Diag(e^gamma) S + alpha * x^T y over the loaded chunk's rows: the state moving forward
// (x = k e^{gamma - b}, y = v, alpha = 1) and its gradient moving backward (x = q e^b,
// y = dout, alpha = scale).
void decay_and_accumulate(HeadChunks& hc, const GlrDims& d, float* S, const float* x,
                          const float* y_rows, float alpha, int64_t n) {
  for (int64_t i = 0; i < d.dk; ++i) {
    const float a = HeadChunks::decay(hc.gamma(i), 0.0);
    for (int64_t j = 0; j < d.dv; ++j) S[i * d.dv + j] *= a;
  }
  gemm(true, false, d.dk, d.dv, n, alpha, x, d.dk, y_rows, hc.v_ld(), 1.0f, S, d.dv);
}

void advance_state(HeadChunks& hc, const GlrDims& d, const float* v, int64_t c, float* S) {
  hc.decayed_k(hc.rows(c));
  decay_and_accumulate(hc, d, S, hc.kd(), hc.v_rows(v, c), 1.0f, hc.rows(c));
}

void retreat_state_gradient(HeadChunks& hc, const GlrDims& d, const float* dout, int64_t c, float* dS) {
  hc.decayed_q(hc.rows(c));
  decay_and_accumulate(hc, d, dS, hc.qd(), hc.v_rows(dout, c), d.scale, hc.rows(c));
}

int64_t state_size(const GlrDims& d) { return d.dk * d.dv; }

// suffix = sum_v S * dS (per channel; summed over channels too for a scalar decay), in double.
void anchor_gate_gradient(const GlrDims& d, const float* S, const float* dS, double* suffix) {
  std::fill(suffix, suffix + (d.vector_decay ? d.dk : 1), 0.0);
  for (int64_t i = 0; i < d.dk; ++i) {
    double acc = 0.0;
    for (int64_t j = 0; j < d.dv; ++j) acc += static_cast<double>(S[i * d.dv + j]) * dS[i * d.dv + j];
    suffix[d.vector_decay ? i : 0] += acc;
  }
}

}  // namespace

void glr_forward(float* o, float* h_final, float* states, const float* q, const float* k,
                 const float* v, const float* g, const float* h0, const GlrDims& d) {
  const int64_t SS = state_size(d);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.H; ++h) {
    HeadChunks hc(d, h);
    std::vector<float> S(SS, 0.0f);
    if (h0) std::memcpy(S.data(), h0 + h * SS, SS * sizeof(float));
    for (int64_t c = 0; c < hc.chunks(); ++c) {
      if (states) std::memcpy(states + (c * d.H + h) * SS, S.data(), SS * sizeof(float));
      const int64_t n = hc.rows(c);
      hc.load(c, o ? q : nullptr, k, g);
      if (o) {
        float* oc = hc.v_rows(o, c);
        hc.decayed_q(n);
        gemm(false, false, n, d.dv, d.dk, d.scale, hc.qd(), d.dk, S.data(), d.dv, 0.0f, oc, hc.v_ld());
        hc.scores(n);
        gemm(false, false, n, d.dv, n, d.scale, hc.p(), d.chunk, hc.v_rows(v, c), hc.v_ld(), 1.0f, oc, hc.v_ld());
      }
      advance_state(hc, d, v, c, S.data());
    }
    if (states) std::memcpy(states + (hc.chunks() * d.H + h) * SS, S.data(), SS * sizeof(float));
    if (h_final) std::memcpy(h_final + h * SS, S.data(), SS * sizeof(float));
  }
}

void glr_backward(float* dq, float* dk, float* dv, float* dg, float* dh0, const float* q,
                  const float* k, const float* v, const float* g, const float* states,
                  const float* dout, const float* dh_final, const GlrDims& d) {
  const int64_t SS = state_size(d), K = d.dk, qk_size = d.T * d.Hg * K;
  const bool shared = d.Hg < d.H;  // heads of a group add into the same dq, dk rows
  const int threads = omp_get_max_threads();
  std::vector<float> group_grads(shared && threads > 1 ? static_cast<size_t>(threads) * 2 * qk_size : 0);
  if (shared) {
    std::fill(dq, dq + qk_size, 0.0f);
    std::fill(dk, dk + qk_size, 0.0f);
  }

#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    float* dq_out = dq;
    float* dk_out = dk;
    if (shared && team > 1) {
      dq_out = group_grads.data() + static_cast<size_t>(tid) * 2 * qk_size;
      dk_out = dq_out + qk_size;
      std::fill(dq_out, dq_out + 2 * qk_size, 0.0f);
    }
    std::vector<float> dS(SS), dq_c(d.chunk * K), dk_c(d.chunk * K);
    // The gate gradient's running sum within a chunk, in double.
    std::vector<double> suffix(d.vector_decay ? K : 1);

#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      HeadChunks hc(d, h);
      const int64_t hg = h / (d.H / d.Hg), nc = hc.chunks();
      if (dh_final) std::memcpy(dS.data(), dh_final + h * SS, SS * sizeof(float));
      else std::fill(dS.begin(), dS.end(), 0.0f);
      for (int64_t c = nc - 1; c >= 0; --c) {
        const int64_t n = hc.rows(c), c0 = hc.start(c);
        // dg's anchor at the chunk's end: sum_v S_next * dS_next, which equals the suffix sum
        // over all later tokens (plus the final-state term) but is computed directly.
        anchor_gate_gradient(d, states + ((c + 1) * d.H + h) * SS, dS.data(), suffix.data());
        const float* s_prev = states + (c * d.H + h) * SS;
        const float* do_c = hc.v_rows(dout, c);
        const float* v_c = hc.v_rows(v, c);
        hc.load(c, q, k, g);
        hc.decayed_q(n);
        hc.decayed_k(n);
        hc.scores(n);
        // dv = scale P^T dO + kd dS
        float* dv_c = hc.v_rows(dv, c);
        gemm(true, false, n, d.dv, n, d.scale, hc.p(), d.chunk, do_c, hc.v_ld(), 0.0f, dv_c, hc.v_ld());
        gemm(false, false, n, d.dv, K, 1.0f, hc.kd(), K, dS.data(), d.dv, 1.0f, dv_c, hc.v_ld());
        // dq = e^b * (scale dO S_prev^T), dk = e^{gamma - b} * (V dS^T), then the intra parts
        gemm(false, true, n, K, d.dv, d.scale, do_c, hc.v_ld(), s_prev, d.dv, 0.0f, dq_c.data(), K);
        gemm(false, true, n, K, d.dv, 1.0f, v_c, hc.v_ld(), dS.data(), d.dv, 0.0f, dk_c.data(), K);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t i = 0; i < K; ++i) {
            dq_c[r * K + i] *= HeadChunks::decay(hc.b(r, i), 0.0);
            dk_c[r * K + i] *= HeadChunks::decay(hc.gamma(i), hc.b(r, i));
          }
        // dP = scale dO V^T, lower triangle
        float* dp = hc.p();
        gemm(false, true, n, n, d.dv, d.scale, do_c, hc.v_ld(), v_c, hc.v_ld(), 0.0f, dp, d.chunk);
        for (int64_t r = 0; r < n; ++r) std::fill(dp + r * d.chunk + r + 1, dp + r * d.chunk + n, 0.0f);
        hc.scores_backward(n, dq_c.data(), dk_c.data());
        // dg: suffix sums of q * dq - k * dk over this head's own gradients
        for (int64_t r = n - 1; r >= 0; --r) {
          float* dg_r = d.vector_decay ? dg + ((c0 + r) * d.H + h) * K : dg + (c0 + r) * d.H + h;
          for (int64_t i = 0; i < K; ++i)
            suffix[d.vector_decay ? i : 0] += static_cast<double>(hc.q()[r * K + i]) * dq_c[r * K + i] -
                                             static_cast<double>(hc.k()[r * K + i]) * dk_c[r * K + i];
          for (size_t i = 0; i < suffix.size(); ++i) dg_r[i] = static_cast<float>(suffix[i]);
        }
        for (int64_t r = 0; r < n; ++r) {
          float* dqr = dq_out + ((c0 + r) * d.Hg + hg) * K;
          float* dkr = dk_out + ((c0 + r) * d.Hg + hg) * K;
          for (int64_t i = 0; i < K; ++i) {
            if (shared) {
              dqr[i] += dq_c[r * K + i];
              dkr[i] += dk_c[r * K + i];
            } else {
              dqr[i] = dq_c[r * K + i];
              dkr[i] = dk_c[r * K + i];
            }
          }
        }
        retreat_state_gradient(hc, d, dout, c, dS.data());
      }
      if (dh0) std::memcpy(dh0 + h * SS, dS.data(), SS * sizeof(float));
    }

    if (shared && team > 1) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < qk_size; ++i) {
        float a = 0.0f, b = 0.0f;
        for (int t = 0; t < team; ++t) {
          a += group_grads[static_cast<size_t>(t) * 2 * qk_size + i];
          b += group_grads[static_cast<size_t>(t) * 2 * qk_size + qk_size + i];
        }
        dq[i] = a;
        dk[i] = b;
      }
    }
  }
}

void glr_chunk_summary(float* s_loc, float* gamma, const float* k, const float* v, const float* g,
                       const GlrDims& d) {
  const int64_t SS = state_size(d), GW = d.vector_decay ? d.dk : 1;
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.H; ++h) {
    HeadChunks hc(d, h);
    float* S = s_loc + h * SS;
    std::fill(S, S + SS, 0.0f);
    // The total decay over the whole piece, in double: units of 128K tokens sum 128K terms.
    std::vector<double> total(GW, 0.0);
    for (int64_t c = 0; c < hc.chunks(); ++c) {
      hc.load(c, nullptr, k, g);
      advance_state(hc, d, v, c, S);
      for (int64_t i = 0; i < GW; ++i) total[i] += hc.gamma(i);
    }
    for (int64_t i = 0; i < GW; ++i) gamma[h * GW + i] = static_cast<float>(total[i]);
  }
}

void glr_state_gradient(float* ds, const float* q, const float* g, const float* dout,
                        const GlrDims& d) {
  const int64_t SS = state_size(d);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.H; ++h) {
    HeadChunks hc(d, h);
    float* dS = ds + h * SS;
    std::fill(dS, dS + SS, 0.0f);
    for (int64_t c = hc.chunks() - 1; c >= 0; --c) {
      hc.load(c, q, nullptr, g);
      retreat_state_gradient(hc, d, dout, c, dS);
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
