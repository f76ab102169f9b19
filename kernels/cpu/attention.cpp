// Blockwise causal attention on the CPU (FlashAttention-2 schedule, OpenBLAS for the tiles).
//   q [Tq, H, D], k, v [Tk, Hkv, D], out [Tq, H, D], lse/delta [Tq, H]; query head h reads
//   key/value head h / (H / Hkv). Query i is at position q_pos0 + i, key j at k_pos0 + j.
//
// Forward: one task per (head, query tile). The task walks the key tiles with an online
// softmax (running max m, running sum l, unnormalised accumulator), so S = QK^T exists only
// as one tile_q x tile_k tile per thread.
//
// Backward: one task per (kv head, key tile) owns dK and dV of its tile and walks every
// query tile (of every query head of its group) that sees it. dQ is shared between tasks, so
// each thread adds into a private dQ scratch that is summed into dq in thread order: no atomics,
// same bits every run with the same thread count. The scratch covers a band of query rows
// at a time to bound its memory.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace rt::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Per-thread dQ scratch budget in floats (16 MiB); bands of query rows are sized to it.
constexpr int64_t kScratchFloats = int64_t(4) << 20;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sets S[r, c] = -inf where key c (at k_pos) is after query r (at q_pos).
void mask_tile(float* s, int64_t ld, int64_t rows, int64_t cols, int64_t q_pos, int64_t k_pos) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t first_masked = std::max<int64_t>(0, q_pos + r - k_pos + 1);
    for (int64_t c = first_masked; c < cols; ++c) s[r * ld + c] = kNegInf;
  }
}

}  // namespace

AttentionTiles& attention_tiles() {
  static AttentionTiles tiles;
  return tiles;
}

void attention_block_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const AttentionDims& d, int64_t q_pos0, int64_t k_pos0, bool causal) {
  const int64_t ldq = d.H * d.D, ldk = d.Hkv * d.D, group = d.H / d.Hkv, D = d.D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t tile_q = attention_tiles().q, tile_k = attention_tiles().k;
  const int64_t q_tiles = ceil_div(d.Tq, tile_q), k_tiles = ceil_div(d.Tk, tile_k);
  const int64_t tasks = d.H * q_tiles;

#pragma omp parallel
  {
    std::vector<float> s(tile_q * tile_k), acc(tile_q * D), m(tile_q), l(tile_q);
    // Heads vary fastest so that neighbouring tasks cost the same under a causal mask.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t h = task % d.H, qt = task / d.H;
      const int64_t i0 = qt * tile_q, bq = std::min(tile_q, d.Tq - i0);
      const int64_t q_lo = q_pos0 + i0, q_hi = q_lo + bq - 1;
      const float* qh = q + i0 * ldq + h * D;
      const float* kh = k + (h / group) * D;
      const float* vh = v + (h / group) * D;
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), 0.0f);
      std::fill(acc.begin(), acc.begin() + bq * D, 0.0f);

      for (int64_t kt = 0; kt < k_tiles; ++kt) {
        const int64_t j0 = kt * tile_k, bk = std::min(tile_k, d.Tk - j0);
        const int64_t k_lo = k_pos0 + j0, k_hi = k_lo + bk - 1;
        if (causal && k_lo > q_hi) break;  // this and every later key tile is in the future
        gemm(false, true, bq, bk, D, scale, qh, ldq, kh + j0 * ldk, ldk, 0.0f, s.data(), tile_k);
        if (causal && k_hi > q_lo) mask_tile(s.data(), tile_k, bq, bk, q_lo, k_lo);

        for (int64_t r = 0; r < bq; ++r) {
          float* row = s.data() + r * tile_k;
          float mx = kNegInf;
#pragma omp simd reduction(max : mx)
          for (int64_t c = 0; c < bk; ++c) mx = std::max(mx, row[c]);
          const float m_new = std::max(m[r], mx);
          if (m_new == kNegInf) {  // nothing visible to this query yet
            std::fill(row, row + bk, 0.0f);
            continue;
          }
          const float alpha = fast_exp(m[r] - m_new);
          float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
          for (int64_t c = 0; c < bk; ++c) {
            float p = fast_exp(row[c] - m_new);
            row[c] = p;
            sum += p;
          }
          l[r] = l[r] * alpha + sum;
          m[r] = m_new;
          if (alpha != 1.0f) {
            float* a = acc.data() + r * D;
#pragma omp simd
            for (int64_t c = 0; c < D; ++c) a[c] *= alpha;
          }
        }
        gemm(false, false, bq, D, bk, 1.0f, s.data(), tile_k, vh + j0 * ldk, ldk, 1.0f, acc.data(),
             D);
      }

      for (int64_t r = 0; r < bq; ++r) {
        float* o = out + (i0 + r) * ldq + h * D;
        const float* a = acc.data() + r * D;
        if (l[r] > 0.0f) {
          const float inv = 1.0f / l[r];
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) o[c] = a[c] * inv;
          lse[(i0 + r) * d.H + h] = m[r] + std::log(l[r]);
        } else {
          std::fill(o, o + D, 0.0f);
          lse[(i0 + r) * d.H + h] = kNegInf;
        }
      }
    }
  }
}

void attention_merge(float* out, float* lse, const float* out_blk, const float* lse_blk, int64_t T,
                     int64_t H, int64_t D) {
#pragma omp parallel for schedule(static) if (T * H * D > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i = t * H + h;
      const float a = lse[i], b = lse_blk[i];
      if (b == kNegInf) continue;  // the block saw no key for this query
      float* o = out + i * D;
      const float* ob = out_blk + i * D;
      if (a == kNegInf) {
        std::copy(ob, ob + D, o);
        lse[i] = b;
        continue;
      }
      // sigmoid(b - a) and logsigmoid(a - b) written so no exp argument is positive.
      const float w =
          b > a ? 1.0f / (1.0f + std::exp(a - b)) : std::exp(b - a) / (1.0f + std::exp(b - a));
#pragma omp simd
      for (int64_t c = 0; c < D; ++c) o[c] -= w * (o[c] - ob[c]);
      lse[i] = std::max(a, b) + std::log1p(std::exp(-std::abs(a - b)));
    }
  }
}

void attention_backward_delta(float* delta, const float* dout, const float* out, int64_t T,
                              int64_t H, int64_t D) {
#pragma omp parallel for schedule(static) if (T * H * D > (1 << 15))
  for (int64_t i = 0; i < T * H; ++i) {
    const float* a = dout + i * D;
    const float* b = out + i * D;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < D; ++c) s += a[c] * b[c];
    delta[i] = s;
  }
}

void attention_block_backward(float* dq, float* dk, float* dv, const float* q, const float* k,
                              const float* v, const float* dout, const float* lse,
                              const float* delta, const AttentionDims& d, int64_t q_pos0,
                              int64_t k_pos0, bool causal) {
  const int64_t ldq = d.H * d.D, ldk = d.Hkv * d.D, group = d.H / d.Hkv, D = d.D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t tile_q = attention_tiles().q, tile_k = attention_tiles().k;
  const int64_t k_tiles = ceil_div(d.Tk, tile_k);
  const int nthreads = omp_get_max_threads();
  // A band of query rows whose dQ scratch fits the budget, a whole number of tiles.
  const int64_t band_rows =
      std::max<int64_t>(tile_q, kScratchFloats / std::max<int64_t>(ldq, 1) / tile_q * tile_q);
  std::vector<float> scratch(
      nthreads > 1 ? static_cast<size_t>(nthreads) * std::min(band_rows, d.Tq) * ldq : 0);

  for (int64_t band0 = 0; band0 < d.Tq; band0 += band_rows) {
    const int64_t band_len = std::min(band_rows, d.Tq - band0);
    const int64_t band_pos_hi = q_pos0 + band0 + band_len - 1;
    // Key tiles that some query of this band sees.
    int64_t k_tiles_seen = k_tiles;
    if (causal)
      k_tiles_seen = std::clamp<int64_t>(ceil_div(band_pos_hi - k_pos0 + 1, tile_k), 0, k_tiles);
    const int64_t tasks = d.Hkv * k_tiles_seen;
    if (tasks == 0) continue;

#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num(), team = omp_get_num_threads();
      // One thread: add straight into dq. Several: into this thread's scratch (rows of the band).
      float* dq_out =
          team > 1 ? scratch.data() + static_cast<size_t>(tid) * band_len * ldq : dq + band0 * ldq;
      if (team > 1) std::fill(dq_out, dq_out + band_len * ldq, 0.0f);
      std::vector<float> p(tile_q * tile_k), ds(tile_q * tile_k), dk_acc(tile_k * D),
          dv_acc(tile_k * D);

#pragma omp for schedule(static, 1)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t hk = task % d.Hkv, kt = task / d.Hkv;
        const int64_t j0 = kt * tile_k, bk = std::min(tile_k, d.Tk - j0);
        const int64_t k_lo = k_pos0 + j0, k_hi = k_lo + bk - 1;
        const float* kt_ptr = k + j0 * ldk + hk * D;
        const float* vt_ptr = v + j0 * ldk + hk * D;
        std::fill(dk_acc.begin(), dk_acc.begin() + bk * D, 0.0f);
        std::fill(dv_acc.begin(), dv_acc.begin() + bk * D, 0.0f);

        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t i0 = band0; i0 < band0 + band_len; i0 += tile_q) {
            const int64_t bq = std::min(tile_q, band0 + band_len - i0);
            const int64_t q_lo = q_pos0 + i0, q_hi = q_lo + bq - 1;
            if (causal && k_lo > q_hi) continue;
            const float* qt_ptr = q + i0 * ldq + h * D;
            const float* dot_ptr = dout + i0 * ldq + h * D;

            // P = exp(S - lse) with S = scale * Q K^T, masked entries 0.
            gemm(false, true, bq, bk, D, scale, qt_ptr, ldq, kt_ptr, ldk, 0.0f, p.data(), tile_k);
            if (causal && k_hi > q_lo) mask_tile(p.data(), tile_k, bq, bk, q_lo, k_lo);
            for (int64_t r = 0; r < bq; ++r) {
              float* row = p.data() + r * tile_k;
              const float row_lse = lse[(i0 + r) * d.H + h];
              if (row_lse == kNegInf) {  // the query sees no key at all
                std::fill(row, row + bk, 0.0f);
                continue;
              }
#pragma omp simd
              for (int64_t c = 0; c < bk; ++c) row[c] = fast_exp(row[c] - row_lse);
            }
            // dV += P^T dO
            gemm(true, false, bk, D, bq, 1.0f, p.data(), tile_k, dot_ptr, ldq, 1.0f, dv_acc.data(),
                 D);
            // dP = dO V^T, then dS = P * (dP - delta)
            gemm(false, true, bq, bk, D, 1.0f, dot_ptr, ldq, vt_ptr, ldk, 0.0f, ds.data(), tile_k);
            for (int64_t r = 0; r < bq; ++r) {
              float* dsr = ds.data() + r * tile_k;
              const float* pr = p.data() + r * tile_k;
              const float dl = delta[(i0 + r) * d.H + h];
#pragma omp simd
              for (int64_t c = 0; c < bk; ++c) dsr[c] = pr[c] * (dsr[c] - dl);
            }
            // dQ += scale * dS K ; dK += scale * dS^T Q
            gemm(false, false, bq, D, bk, scale, ds.data(), tile_k, kt_ptr, ldk, 1.0f,
                 dq_out + (i0 - band0) * ldq + h * D, ldq);
            gemm(true, false, bk, D, bq, scale, ds.data(), tile_k, qt_ptr, ldq, 1.0f, dk_acc.data(),
                 D);
          }
        }
        for (int64_t r = 0; r < bk; ++r) {
          float* dkr = dk + (j0 + r) * ldk + hk * D;
          float* dvr = dv + (j0 + r) * ldk + hk * D;
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) {
            dkr[c] += dk_acc[r * D + c];
            dvr[c] += dv_acc[r * D + c];
          }
        }
      }

      if (team > 1) {
        // The implicit barrier of the loop above has passed: every scratch is complete.
#pragma omp for schedule(static)
        for (int64_t r = 0; r < band_len; ++r) {
          float* dst = dq + (band0 + r) * ldq;
          for (int t = 0; t < team; ++t) {
            const float* src = scratch.data() + (static_cast<size_t>(t) * band_len + r) * ldq;
#pragma omp simd
            for (int64_t c = 0; c < ldq; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

}  // namespace rt::cpu
