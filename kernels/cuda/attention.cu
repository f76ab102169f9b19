// Blockwise causal attention on the GPU (FlashAttention-2 schedule, f32 on CUDA cores), the
// same contract as kernels/cpu/attention.cpp. Our own kernel rather than cuDNN's fused SDPA:
// the ring needs blocks at any pair of global offsets (q_pos0, k_pos0) with the causal cut
// falling anywhere in the block, the LSE out for the merge and a backward from the GLOBAL
// LSE and delta; cuDNN's SDPA aligns its causal mask to the block's corner, takes fp16/bf16
// only (no f32 path to check against the CPU op), and only its backend API is installed here
// (the frontend headers are not packaged). A tensor-core bf16 version is the next step.
//   q [Tq, H, D], k, v [Tk, Hkv, D], out [Tq, H, D], lse/delta [Tq, H]; query head h reads
//   key/value head h / (H / Hkv). Query i is at position q_pos0 + i, key j at k_pos0 + j;
//   causal keeps key j for query i when k_pos0 + j <= q_pos0 + i. A query with no kept key
//   gets out = 0 and lse = -inf. scale = 1 / sqrt(D). D <= 256, any Tq, Tk.
//
// Thread layout shared by the three tile kernels: a block of 8 warps OWNS 32 rows (4 per warp;
// each lane keeps columns lane, lane + 32, ... of its warp's 4 rows in registers, so D <= 256
// means at most 8 registers per row) and STREAMS tiles of 32 rows of the other operand through
// shared memory, one streamed row per lane. Each (owned row, streamed row) pair is scored by
// the lane of the streamed row (a dot product over D with the owned row broadcast from shared
// memory), then the warp shuffles the per-pair weights to every lane to accumulate along D.
// Streamed tiles are stored with an odd row stride so that 32 lanes reading 32 different rows
// at the same column hit 32 different banks.
//
// Forward: grid (query tile, head). The block owns 32 queries and streams key/value tiles with
// an online softmax (running max m, running sum l, unnormalised accumulator), so the scores
// exist only as one value per lane. lse = m + log(l).
//
// Backward, deterministic and without atomics (each output element has one owner that sums in
// a fixed order):
//   dkdv: grid (key tile, kv head). The block owns 32 keys (dK, dV in registers) and streams
//         the query tiles of every query head of its group: p = exp(scale q.k - lse),
//         dv += p dout, dp = dout.v, ds = p (dp - delta), dk += scale ds q.
//   dq:   grid (query tile, head). The block owns 32 queries and streams key tiles,
//         recomputing p and ds: dq += scale ds k.
// Causal blocks skip the key (or query) range that is fully masked for the whole block, and a
// warp skips the compute (not the shared-memory staging, which the whole block does) of a
// streamed tile fully masked for its own rows.
//
// Shared memory per block, floats: forward 32 D + 32 (D|1) + 32 D, backward 64 D + 64 (D|1)
// (+ 64): 132 KB at D = 256, above the 48 KB default, so the kernels opt in (A100: 163 KB,
// H100: 227 KB).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

constexpr int kWarps = 8;                   // warps per block
constexpr int kBlockThreads = kWarps * 32;  // threads per block
constexpr int kRows = 4;                    // owned rows per warp
constexpr int kOwn = kWarps * kRows;        // owned rows per block
constexpr int kStream = 32;                 // rows of a streamed tile: one per lane
constexpr int kMaxD = 256;                  // 8 column chunks of 32 per lane
constexpr int kMaxChunks = kMaxD / 32;

struct Params {
  int Tq, Tk, H, Hkv, D;
  int64_t q_pos0, k_pos0;
  bool causal;
  float scale;
};

// Odd row stride of a streamed tile: lanes reading rows 0..31 at one column hit distinct banks.
__host__ __device__ inline int stream_stride(int D) { return D | 1; }

__device__ inline int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Copies rows [0, n) of one head (src points at row 0 of the head, rows ld floats apart) into
// dst rows of `stride` floats, and zeros rows [n, rows): padding rows must be finite, since a
// masked weight of 0 times garbage could be NaN. The whole block takes part.
__device__ inline void stage_rows(float* dst, int stride, const float* src, int64_t ld, int rows,
                                  int n, int D) {
  for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
    const int r = e / D, c = e - r * D;
    dst[r * stride + c] = r < n ? src[r * ld + c] : 0.0f;
  }
}

// ---- forward ----------------------------------------------------------------------------
template <int DT>
__global__ void __launch_bounds__(kBlockThreads)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                             Params p) {
  extern __shared__ float smem[];
  const int D = p.D, Dp = stream_stride(D);
  float* Qs = smem;               // [kOwn][D]     the block's queries (read as broadcasts)
  float* Ks = Qs + kOwn * D;      // [kStream][Dp] keys of the tile: lane j reads row j
  float* Vs = Ks + kStream * Dp;  // [kStream][D]  values of the tile: read along D

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int h = blockIdx.y, hk = h / (p.H / p.Hkv);
  const int64_t ldq = int64_t(p.H) * D, ldk = int64_t(p.Hkv) * D;
  // The last query tiles see the most keys under a causal mask: start them first so that the
  // end of the grid is made of short blocks.
  const int64_t i0 = (int64_t(gridDim.x) - 1 - blockIdx.x) * kOwn;
  const int bq = static_cast<int>(min(int64_t(kOwn), p.Tq - i0));
  const int r0 = warp * kRows;                 // the warp's first row within the tile
  const int nr = max(0, min(kRows, bq - r0));  // rows of this warp that exist
  const int64_t qpos0_w = p.q_pos0 + i0 + r0;  // position of the warp's first row
  // Keys at or past kend are after every query of the block.
  const int kend =
      p.causal ? static_cast<int>(clamp64(p.q_pos0 + i0 + bq - p.k_pos0, 0, p.Tk)) : p.Tk;

  stage_rows(Qs, D, q + i0 * ldq + int64_t(h) * D, ldq, kOwn, bq, D);

  float m[kRows], l[kRows], acc[kRows][DT];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < DT; ++t) acc[r][t] = 0.0f;
  }

  for (int j0 = 0; j0 < kend; j0 += kStream) {
    const int bk = min(kStream, kend - j0);
    __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
    stage_rows(Ks, Dp, k + int64_t(j0) * ldk + int64_t(hk) * D, ldk, kStream, bk, D);
    stage_rows(Vs, D, v + int64_t(j0) * ldk + int64_t(hk) * D, ldk, kStream, bk, D);
    __syncthreads();
    if (nr == 0 || (p.causal && p.k_pos0 + j0 > qpos0_w + nr - 1)) continue;  // warp-uniform

    // Scores of key j0 + lane against the warp's rows.
    float s[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
    const float* krow = Ks + lane * Dp;
#pragma unroll 4
    for (int c = 0; c < D; ++c) {
      const float kc = krow[c];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] += Qs[(r0 + r) * D + c] * kc;
    }
    const int64_t kpos = p.k_pos0 + j0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const bool keep = lane < bk && r < nr && (!p.causal || kpos <= qpos0_w + r);
      s[r] = keep ? s[r] * p.scale : -INFINITY;
    }

    // Online softmax; m, l and the tile max are the same in every lane of the warp.
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float m_new = fmaxf(m[r], warp_max(s[r]));
      if (m_new == -INFINITY) {  // nothing visible to this row yet
        s[r] = 0.0f;
        continue;
      }
      const float alpha = expf(m[r] - m_new);  // 0 the first time (m = -inf)
      s[r] = expf(s[r] - m_new);               // 0 for masked keys
      l[r] = l[r] * alpha + warp_sum(s[r]);
      m[r] = m_new;
#pragma unroll
      for (int t = 0; t < DT; ++t) acc[r][t] *= alpha;
    }

    // acc += P V: every lane takes each key's weight from the key's lane.
    for (int j = 0; j < bk; ++j) {
      float pj[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) pj[r] = __shfl_sync(0xffffffffu, s[r], j);
#pragma unroll
      for (int t = 0; t < DT; ++t) {
        const int c = lane + 32 * t;
        if (c < D) {
          const float vc = Vs[j * D + c];
#pragma unroll
          for (int r = 0; r < kRows; ++r) acc[r][t] += pj[r] * vc;
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= nr) continue;
    const int64_t row = (i0 + r0 + r) * p.H + h;  // index into [Tq, H]
    float* o = out + row * D;
    const bool seen = l[r] > 0.0f;
    const float inv = seen ? 1.0f / l[r] : 0.0f;
#pragma unroll
    for (int t = 0; t < DT; ++t) {
      const int c = lane + 32 * t;
      if (c < D) o[c] = seen ? acc[r][t] * inv : 0.0f;
    }
    if (lane == 0) lse[row] = seen ? m[r] + logf(l[r]) : -INFINITY;
  }
}

// ---- backward: dK, dV -------------------------------------------------------------------
template <int DT>
__global__ void __launch_bounds__(kBlockThreads)
    attention_backward_dkdv_kernel(float* dk, float* dv, const float* q, const float* k,
                                   const float* v, const float* dout, const float* lse,
                                   const float* delta, Params p) {
  extern __shared__ float smem[];
  const int D = p.D, Dp = stream_stride(D);
  float* Ks = smem;                // [kOwn][D]     the block's keys (read as broadcasts)
  float* Vs = Ks + kOwn * D;       // [kOwn][D]     the block's values
  float* Qs = Vs + kOwn * D;       // [kStream][Dp] queries of the tile: lane i reads row i
  float* dOs = Qs + kStream * Dp;  // [kStream][Dp] their output gradients
  float* Ls = dOs + kStream * Dp;  // [kStream]     their lse (-inf past the end)
  float* Deltas = Ls + kStream;    // [kStream]     their delta

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int hk = blockIdx.y, group = p.H / p.Hkv;
  const int64_t ldq = int64_t(p.H) * D, ldk = int64_t(p.Hkv) * D;
  const int64_t j0 = int64_t(blockIdx.x) * kOwn;
  const int bk = static_cast<int>(min(int64_t(kOwn), p.Tk - j0));
  // Queries before the block's first key never see any of its keys.
  const int ibegin = p.causal ? static_cast<int>(clamp64(p.k_pos0 + j0 - p.q_pos0, 0, p.Tq)) : 0;
  if (ibegin >= p.Tq) return;  // block-uniform: no query sees these keys

  stage_rows(Ks, D, k + j0 * ldk + int64_t(hk) * D, ldk, kOwn, bk, D);
  stage_rows(Vs, D, v + j0 * ldk + int64_t(hk) * D, ldk, kOwn, bk, D);

  const int r0 = warp * kRows;
  const int nr = max(0, min(kRows, bk - r0));
  const int64_t kpos0_w = p.k_pos0 + j0 + r0;  // position of the warp's first key

  float dk_acc[kRows][DT], dv_acc[kRows][DT];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int t = 0; t < DT; ++t) dk_acc[r][t] = dv_acc[r][t] = 0.0f;
  }

  for (int hq = hk * group; hq < (hk + 1) * group; ++hq) {
    for (int i0 = ibegin; i0 < p.Tq; i0 += kStream) {
      const int bq = min(kStream, p.Tq - i0);
      __syncthreads();  // the previous tile is consumed (and, the first time, Ks, Vs written)
      stage_rows(Qs, Dp, q + int64_t(i0) * ldq + int64_t(hq) * D, ldq, kStream, bq, D);
      stage_rows(dOs, Dp, dout + int64_t(i0) * ldq + int64_t(hq) * D, ldq, kStream, bq, D);
      for (int e = threadIdx.x; e < kStream; e += blockDim.x) {
        const int64_t row = (int64_t(i0) + e) * p.H + hq;
        Ls[e] = e < bq ? lse[row] : -INFINITY;
        Deltas[e] = e < bq ? delta[row] : 0.0f;
      }
      __syncthreads();
      // Skip when the tile's last query is before the warp's first key (warp-uniform).
      if (nr == 0 || (p.causal && p.q_pos0 + i0 + bq - 1 < kpos0_w)) continue;

      // s = q.k and dp = dout.v of query i0 + lane against the warp's keys.
      float s[kRows], dp[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] = dp[r] = 0.0f;
      const float* qrow = Qs + lane * Dp;
      const float* dorow = dOs + lane * Dp;
#pragma unroll 4
      for (int c = 0; c < D; ++c) {
        const float qc = qrow[c], oc = dorow[c];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          s[r] += qc * Ks[(r0 + r) * D + c];
          dp[r] += oc * Vs[(r0 + r) * D + c];
        }
      }
      const float row_lse = Ls[lane], row_delta = Deltas[lane];
      const int64_t qpos = p.q_pos0 + i0 + lane;
      float pr[kRows], ds[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        // A query with lse = -inf saw no key at all: its weights are 0 (as on the CPU).
        const bool keep =
            lane < bq && r < nr && row_lse != -INFINITY && (!p.causal || kpos0_w + r <= qpos);
        pr[r] = keep ? expf(s[r] * p.scale - row_lse) : 0.0f;
        ds[r] = keep ? pr[r] * (dp[r] - row_delta) : 0.0f;
      }

      // dv += p dout, dk += ds q over the tile's queries, in query order.
      for (int i = 0; i < bq; ++i) {
        float pi[kRows], dsi[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          pi[r] = __shfl_sync(0xffffffffu, pr[r], i);
          dsi[r] = __shfl_sync(0xffffffffu, ds[r], i);
        }
#pragma unroll
        for (int t = 0; t < DT; ++t) {
          const int c = lane + 32 * t;
          if (c < D) {
            const float oc = dOs[i * Dp + c], qc = Qs[i * Dp + c];
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
              dv_acc[r][t] += pi[r] * oc;
              dk_acc[r][t] += dsi[r] * qc;
            }
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= nr) continue;
    const int64_t off = (j0 + r0 + r) * ldk + int64_t(hk) * D;
#pragma unroll
    for (int t = 0; t < DT; ++t) {
      const int c = lane + 32 * t;
      if (c < D) {
        dk[off + c] += p.scale * dk_acc[r][t];
        dv[off + c] += dv_acc[r][t];
      }
    }
  }
}

// ---- backward: dQ -----------------------------------------------------------------------
template <int DT>
__global__ void __launch_bounds__(kBlockThreads)
    attention_backward_dq_kernel(float* dq, const float* q, const float* k, const float* v,
                                 const float* dout, const float* lse, const float* delta,
                                 Params p) {
  extern __shared__ float smem[];
  const int D = p.D, Dp = stream_stride(D);
  float* Qs = smem;               // [kOwn][D]     the block's queries (read as broadcasts)
  float* dOs = Qs + kOwn * D;     // [kOwn][D]     their output gradients
  float* Ks = dOs + kOwn * D;     // [kStream][Dp] keys of the tile: lane j reads row j
  float* Vs = Ks + kStream * Dp;  // [kStream][Dp] values of the tile

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int h = blockIdx.y, hk = h / (p.H / p.Hkv);
  const int64_t ldq = int64_t(p.H) * D, ldk = int64_t(p.Hkv) * D;
  const int64_t i0 = (int64_t(gridDim.x) - 1 - blockIdx.x) * kOwn;  // heaviest tiles first
  const int bq = static_cast<int>(min(int64_t(kOwn), p.Tq - i0));
  const int kend =
      p.causal ? static_cast<int>(clamp64(p.q_pos0 + i0 + bq - p.k_pos0, 0, p.Tk)) : p.Tk;
  if (kend == 0) return;  // block-uniform: these queries see no key of the block

  stage_rows(Qs, D, q + i0 * ldq + int64_t(h) * D, ldq, kOwn, bq, D);
  stage_rows(dOs, D, dout + i0 * ldq + int64_t(h) * D, ldq, kOwn, bq, D);

  const int r0 = warp * kRows;
  const int nr = max(0, min(kRows, bq - r0));
  const int64_t qpos0_w = p.q_pos0 + i0 + r0;
  float row_lse[kRows], row_delta[kRows], dq_acc[kRows][DT];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = (i0 + r0 + r) * p.H + h;
    row_lse[r] = r < nr ? lse[row] : -INFINITY;
    row_delta[r] = r < nr ? delta[row] : 0.0f;
#pragma unroll
    for (int t = 0; t < DT; ++t) dq_acc[r][t] = 0.0f;
  }

  for (int j0 = 0; j0 < kend; j0 += kStream) {
    const int bk = min(kStream, kend - j0);
    __syncthreads();  // the previous tile is consumed (and, the first time, Qs, dOs written)
    stage_rows(Ks, Dp, k + int64_t(j0) * ldk + int64_t(hk) * D, ldk, kStream, bk, D);
    stage_rows(Vs, Dp, v + int64_t(j0) * ldk + int64_t(hk) * D, ldk, kStream, bk, D);
    __syncthreads();
    if (nr == 0 || (p.causal && p.k_pos0 + j0 > qpos0_w + nr - 1)) continue;  // warp-uniform

    // s = q.k and dp = dout.v of key j0 + lane against the warp's queries.
    float s[kRows], dp[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = dp[r] = 0.0f;
    const float* krow = Ks + lane * Dp;
    const float* vrow = Vs + lane * Dp;
#pragma unroll 4
    for (int c = 0; c < D; ++c) {
      const float kc = krow[c], vc = vrow[c];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        s[r] += Qs[(r0 + r) * D + c] * kc;
        dp[r] += dOs[(r0 + r) * D + c] * vc;
      }
    }
    const int64_t kpos = p.k_pos0 + j0 + lane;
    float ds[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const bool keep =
          lane < bk && r < nr && row_lse[r] != -INFINITY && (!p.causal || kpos <= qpos0_w + r);
      const float pr = keep ? expf(s[r] * p.scale - row_lse[r]) : 0.0f;
      ds[r] = keep ? pr * (dp[r] - row_delta[r]) : 0.0f;
    }

    // dq += ds k over the tile's keys, in key order.
    for (int j = 0; j < bk; ++j) {
      float dsj[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) dsj[r] = __shfl_sync(0xffffffffu, ds[r], j);
#pragma unroll
      for (int t = 0; t < DT; ++t) {
        const int c = lane + 32 * t;
        if (c < D) {
          const float kc = Ks[j * Dp + c];
#pragma unroll
          for (int r = 0; r < kRows; ++r) dq_acc[r][t] += dsj[r] * kc;
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= nr) continue;
    float* g = dq + (i0 + r0 + r) * ldq + int64_t(h) * D;
#pragma unroll
    for (int t = 0; t < DT; ++t) {
      const int c = lane + 32 * t;
      if (c < D) g[c] += p.scale * dq_acc[r][t];
    }
  }
}

// ---- merge and delta: one warp per (token, head) row ----------------------------------------
__global__ void attention_merge_kernel(float* out, float* lse, const float* out_blk,
                                       const float* lse_blk, int64_t rows, int64_t D) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < rows;
       i += warps) {
    const float a = lse[i], b = lse_blk[i];
    if (b == -INFINITY) continue;  // the block saw no key for this query (warp-uniform)
    float* o = out + i * D;
    const float* ob = out_blk + i * D;
    float new_lse;
    if (a == -INFINITY) {
      for (int64_t c = lane; c < D; c += 32) o[c] = ob[c];
      new_lse = b;
    } else {
      // sigmoid(b - a) and logsigmoid(a - b) written so no exp argument is positive.
      const float w = b > a ? 1.0f / (1.0f + expf(a - b)) : expf(b - a) / (1.0f + expf(b - a));
      for (int64_t c = lane; c < D; c += 32) o[c] -= w * (o[c] - ob[c]);
      new_lse = fmaxf(a, b) + log1pf(expf(-fabsf(a - b)));
    }
    __syncwarp();  // every lane has read lse[i] before lane 0 overwrites it
    if (lane == 0) lse[i] = new_lse;
  }
}

__global__ void attention_delta_kernel(float* delta, const float* dout, const float* out,
                                       int64_t rows, int64_t D) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < rows;
       i += warps) {
    float s = 0.0f;
    for (int64_t c = lane; c < D; c += 32) s += dout[i * D + c] * out[i * D + c];
    s = warp_sum(s);
    if (lane == 0) delta[i] = s;
  }
}

// ---- host side --------------------------------------------------------------------------
using ForwardFn = void (*)(float*, float*, const float*, const float*, const float*, Params);
using DkdvFn = void (*)(float*, float*, const float*, const float*, const float*, const float*,
                        const float*, const float*, Params);
using DqFn = void (*)(float*, const float*, const float*, const float*, const float*, const float*,
                      const float*, Params);

#define RT_ATTENTION_INSTANCES(kernel) \
  { kernel<1>, kernel<2>, kernel<3>, kernel<4>, kernel<5>, kernel<6>, kernel<7>, kernel<8> }

Params make_params(const AttentionDims& d, int64_t q_pos0, int64_t k_pos0, bool causal) {
  RT_CHECK(d.D >= 1 && d.D <= kMaxD, "CUDA attention supports head dims 1..", kMaxD, ", got ", d.D);
  RT_CHECK(d.Hkv >= 1 && d.H % d.Hkv == 0 && d.H <= 65535, "bad head counts H=", d.H,
           " Hkv=", d.Hkv);
  RT_CHECK(d.Tq >= 0 && d.Tk >= 0 && d.Tq < (int64_t(1) << 31) - kOwn &&
               d.Tk < (int64_t(1) << 31) - kOwn,
           "attention lengths out of range: Tq=", d.Tq, " Tk=", d.Tk);
  Params p;
  p.Tq = static_cast<int>(d.Tq);
  p.Tk = static_cast<int>(d.Tk);
  p.H = static_cast<int>(d.H);
  p.Hkv = static_cast<int>(d.Hkv);
  p.D = static_cast<int>(d.D);
  p.q_pos0 = q_pos0;
  p.k_pos0 = k_pos0;
  p.causal = causal;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d.D));  // as the CPU computes it
  return p;
}

// Registers per lane and owned row: ceil(D / 32) column chunks.
int chunks(int D) { return (D + 31) / 32; }

// Kernels above 48 KB of dynamic shared memory must ask for it.
void allow_shared(const void* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    RT_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)));
}

size_t forward_shared_bytes(int D) {
  return sizeof(float) *
         (size_t(kOwn) * D + size_t(kStream) * stream_stride(D) + size_t(kStream) * D);
}
size_t dkdv_shared_bytes(int D) {
  return sizeof(float) *
         (2 * size_t(kOwn) * D + 2 * size_t(kStream) * stream_stride(D) + 2 * size_t(kStream));
}
size_t dq_shared_bytes(int D) {
  return sizeof(float) * (2 * size_t(kOwn) * D + 2 * size_t(kStream) * stream_stride(D));
}

// Warps of 32 threads, one per row, kBlockThreads / 32 rows per block.
unsigned row_blocks(int64_t rows) { return blocks_for(rows * 32, kBlockThreads); }

}  // namespace

void attention_block_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const AttentionDims& d, int64_t q_pos0, int64_t k_pos0, bool causal) {
  const Params p = make_params(d, q_pos0, k_pos0, causal);
  if (p.Tq == 0 || p.H == 0) return;
  static const ForwardFn kernels[kMaxChunks] = RT_ATTENTION_INSTANCES(attention_forward_kernel);
  const ForwardFn kernel = kernels[chunks(p.D) - 1];
  const size_t smem = forward_shared_bytes(p.D);
  allow_shared(reinterpret_cast<const void*>(kernel), smem);
  const dim3 grid(static_cast<unsigned>(ceil_div(p.Tq, kOwn)), static_cast<unsigned>(p.H));
  kernel<<<grid, kBlockThreads, smem, compute_stream()>>>(out, lse, q, k, v, p);
  RT_CUDA_LAUNCHED();
}

void attention_merge(float* out, float* lse, const float* out_blk, const float* lse_blk, int64_t T,
                     int64_t H, int64_t D) {
  const int64_t rows = T * H;
  if (rows == 0) return;
  attention_merge_kernel<<<row_blocks(rows), kBlockThreads, 0, compute_stream()>>>(
      out, lse, out_blk, lse_blk, rows, D);
  RT_CUDA_LAUNCHED();
}

void attention_backward_delta(float* delta, const float* dout, const float* out, int64_t T,
                              int64_t H, int64_t D) {
  const int64_t rows = T * H;
  if (rows == 0) return;
  attention_delta_kernel<<<row_blocks(rows), kBlockThreads, 0, compute_stream()>>>(delta, dout, out,
                                                                                   rows, D);
  RT_CUDA_LAUNCHED();
}

void attention_block_backward(float* dq, float* dk, float* dv, const float* q, const float* k,
                              const float* v, const float* dout, const float* lse,
                              const float* delta, const AttentionDims& d, int64_t q_pos0,
                              int64_t k_pos0, bool causal) {
  const Params p = make_params(d, q_pos0, k_pos0, causal);
  if (p.Tq == 0 || p.Tk == 0 || p.H == 0) return;
  const int dt = chunks(p.D);

  static const DkdvFn dkdv_kernels[kMaxChunks] =
      RT_ATTENTION_INSTANCES(attention_backward_dkdv_kernel);
  const DkdvFn dkdv = dkdv_kernels[dt - 1];
  const size_t dkdv_smem = dkdv_shared_bytes(p.D);
  allow_shared(reinterpret_cast<const void*>(dkdv), dkdv_smem);
  const dim3 dkdv_grid(static_cast<unsigned>(ceil_div(p.Tk, kOwn)), static_cast<unsigned>(p.Hkv));
  dkdv<<<dkdv_grid, kBlockThreads, dkdv_smem, compute_stream()>>>(dk, dv, q, k, v, dout, lse, delta,
                                                                  p);
  RT_CUDA_LAUNCHED();

  static const DqFn dq_kernels[kMaxChunks] = RT_ATTENTION_INSTANCES(attention_backward_dq_kernel);
  const DqFn dq_kernel = dq_kernels[dt - 1];
  const size_t dq_smem = dq_shared_bytes(p.D);
  allow_shared(reinterpret_cast<const void*>(dq_kernel), dq_smem);
  const dim3 dq_grid(static_cast<unsigned>(ceil_div(p.Tq, kOwn)), static_cast<unsigned>(p.H));
  dq_kernel<<<dq_grid, kBlockThreads, dq_smem, compute_stream()>>>(dq, q, k, v, dout, lse, delta,
                                                                   p);
  RT_CUDA_LAUNCHED();
}

#undef RT_ATTENTION_INSTANCES

}  // namespace rt::cuda
