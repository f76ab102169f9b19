// The gated linear recurrence (GLR) on the GPU, chunked: the algebra of kernels/cpu/glr.cpp,
// with the chunks spread over the GPU instead of walked one after the other. Per head h, q/k
// group hg = h / (H / Hg):
//   S_t = Diag(e^{g_t}) S_{t-1} + k_t v_t^T,  o_t = scale * S_t^T q_t,  S_{-1} = h0
// Shapes (row-major, f32):
//   q, k [T, Hg, dk]   v, o, dout [T, H, dv]   g [T, H, dk] (vector decay) or [T, H] (scalar)
//   h0, h_final, dh_final, dh0, s_loc, ds [H, dk, dv]   states [ceil(T/chunk) + 1, H, dk, dv]
//   gamma [H, dk] or [H]
//
// Pieces. The kernels work on pieces of at most kPiece = 128 tokens: a chunk of the contract is
// one piece up to 128 tokens and is cut into ceil(chunk / 128) pieces beyond (the last ones of
// the last chunk may be empty), so the shared-memory tiles have a fixed size for any chunk. The
// states of the contract are then the states entering every ceil(chunk / 128)-th piece, and
// the backward recomputes the others from states[0]. Within piece p, of n rows from token t0:
//   b_r      = sum_{s <= r} g_{t0+s}, in double (as the CPU: exponent differences taken in double)
//   s_loc_p  = sum_r (k_r e^{b_{n-1} - b_r}) v_r^T              the piece's state from zero
//   S_{p+1}  = Diag(e^{b_{n-1}}) S_p + s_loc_p                  (a scan over the pieces)
//   o_r      = scale * ((q_r e^{b_r})^T S_p + sum_{j <= r} P_rj v_j),
//   P_rj     = sum_i q_ri k_ji e^{b_ri - b_ji}                   every exponent <= 0 (g <= 0)
// Backward, with G_p the gradient of the state entering piece p (G_np = dh_final):
//   G_p      = Diag(e^{b_{n-1}}) G_{p+1} + scale * sum_r (q_r e^{b_r}) dout_r^T    (reverse scan)
//   dv_j     = scale * sum_{r >= j} P_rj dout_r + (k_j e^{b_{n-1} - b_j})^T G_{p+1}
//   dP_rj    = scale * dout_r . v_j
//   dq_r     = e^{b_r} (scale * S_p dout_r) + sum_{j <= r} dP_rj k_j e^{b_r - b_j}
//   dk_j     = e^{b_{n-1} - b_j} (G_{p+1} v_j) + sum_{r >= j} dP_rj q_r e^{b_r - b_j}
//   dg       the CPU's anchored identity: dg_t = sum_{t' >= t in the piece} (q dq - k dk)
//            + sum_v S_{p+1} G_{p+1}, per (head, decay channel) in double, with the head's own
//            dq, dk: a suffix sum per piece from its anchor.
// Kernels, each one block of 256 threads per (piece, head) unless said otherwise:
//   glr_piece_decay_kernel   one thread per (piece, head, channel): b and the piece's gamma.
//   glr_piece_state_kernel   grid (pieces, H, dv / 32): s_loc_p, or the local state gradient;
//                            warp w holds state rows w, w + 8, ... of the 32 columns (lanes).
//   glr_state_scan_kernel    one thread per state entry, sequential over the pieces, in place
//                            over the pieces' own states (no second buffer of that size).
//   glr_piece_output_kernel  o, one tile of kTile rows at a time.
//   glr_piece_grad_kernel    dv, dq and dk of the piece's rows (each head's own dq, dk).
//   then the group sums of dq, dk (with shared q/k groups), dg's terms, anchors and sums.
// The scores P and dP are warp dot products (lanes over the reduced dimension, a fixed shuffle
// tree); every other sum runs in a fixed order in one thread, so one GPU gives the same bits
// every run. No atomics. f32 on CUDA cores (no TF32): the tensor-core form comes with bf16.
#include <algorithm>

#include "core/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kMaxDk = 256;
constexpr int kRows = kMaxDk / kWarps;  // state entries per thread in glr_piece_state_kernel
constexpr int kPiece = 128;             // rows of a piece at most
constexpr int kTile = 16;               // rows staged in shared memory at once

int64_t pieces_per_chunk(const GlrDims& d) { return ceil_div(d.chunk, kPiece); }
int64_t piece_count(const GlrDims& d) { return ceil_div(d.T, d.chunk) * pieces_per_chunk(d); }

// One (piece, head): where its rows are in each tensor, and its cumulative decays.
struct HeadPiece {
  GlrDims d;        // a copy: a reference to a kernel parameter would send it through local memory
  const double* b;  // [T, H, GW] cumulative decay within each piece
  int64_t h, hg, t0;
  int n;  // rows, 0 for an empty piece

  __device__ HeadPiece(const GlrDims& dims, const double* cum, int64_t p, int64_t head)
      : d(dims), b(cum), h(head), hg(head / (dims.H / dims.Hg)) {
    const int64_t per = ceil_div(d.chunk, kPiece), s = p % per;
    t0 = p / per * d.chunk + s * kPiece;
    int64_t rows = d.chunk - s * kPiece;
    if (rows > kPiece) rows = kPiece;
    if (rows > d.T - t0) rows = d.T - t0;
    n = rows > 0 ? static_cast<int>(rows) : 0;
  }
  __device__ int64_t qk(int r) const { return ((t0 + r) * d.Hg + hg) * d.dk; }  // q, k rows
  __device__ int64_t hv(int r) const { return ((t0 + r) * d.H + h) * d.dv; }    // v, o, dout
  __device__ int64_t hk(int r) const { return ((t0 + r) * d.H + h) * d.dk; }    // per-head dq, dk
  __device__ double cum(int r, int i) const {
    return d.vector_decay ? b[((t0 + r) * d.H + h) * d.dk + i] : b[(t0 + r) * d.H + h];
  }
  // e^{b_r - b_j} (j = -1: e^{b_r}), the difference taken in double.
  __device__ float decay(int r, int j, int i) const {
    return expf(static_cast<float>(cum(r, i) - (j < 0 ? 0.0 : cum(j, i))));
  }
};

// grid-stride over (piece, head, channel): b [T, H, GW] and gamma [pieces, H, GW] (b of the
// piece's last row, 0 for an empty piece).
__global__ void glr_piece_decay_kernel(double* b, float* gamma, const float* g, GlrDims d,
                                       int64_t pieces) {
  const int64_t GW = d.vector_decay ? d.dk : 1;
  RT_GRID_STRIDE(e, pieces * d.H * GW) {
    const int64_t ch = e % GW, h = (e / GW) % d.H, p = e / (GW * d.H);
    const HeadPiece hp(d, b, p, h);
    double acc = 0.0;
    for (int r = 0; r < hp.n; ++r) {
      const int64_t x = ((hp.t0 + r) * d.H + h) * GW + ch;
      acc += g[x];
      b[x] = acc;
    }
    gamma[e] = static_cast<float>(acc);
  }
}

// grid (pieces, H, ceil(dv / 32)), block kBlock. s_loc [pieces, H, dk, dv] = alpha * x^T y over
// the piece's rows, x_r = k_r e^{b_{n-1} - b_r} and y = v (forward: the piece's state from
// zero) or x_r = q_r e^{b_r} and y = dout (backward: its local state gradient).
__global__ void __launch_bounds__(kBlock)
    glr_piece_state_kernel(float* s_loc, const float* x_src, const float* y_src, const double* b,
                           GlrDims d, bool forward, float alpha) {
  __shared__ float xs[kTile][kMaxDk];
  __shared__ float ys[kTile][32];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const int64_t p = blockIdx.x, h = blockIdx.y, j = blockIdx.z * int64_t(32) + lane;
  const HeadPiece hp(d, b, p, h);
  const int dk = static_cast<int>(d.dk);

  float acc[kRows];
#pragma unroll
  for (int m = 0; m < kRows; ++m) acc[m] = 0.0f;
  for (int R = 0; R < hp.n; R += kTile) {
    const int rn = min(kTile, hp.n - R);
    __syncthreads();  // the previous tile has been read
    for (int e = threadIdx.x; e < rn * dk; e += kBlock) {
      const int r = e / dk, i = e % dk;
      const float f = forward ? hp.decay(hp.n - 1, R + r, i) : hp.decay(R + r, -1, i);
      xs[r][i] = x_src[hp.qk(R + r) + i] * f;
    }
    for (int e = threadIdx.x; e < rn * 32; e += kBlock) {
      const int r = e / 32;
      const int64_t col = blockIdx.z * int64_t(32) + e % 32;
      ys[r][e % 32] = col < d.dv ? y_src[hp.hv(R + r) + col] : 0.0f;
    }
    __syncthreads();
    for (int r = 0; r < rn; ++r) {
      const float y = ys[r][lane];
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const int i = w + kWarps * m;
        if (i < dk) acc[m] += xs[r][i] * y;
      }
    }
  }
  if (j >= d.dv) return;
  float* out = s_loc + (p * d.H + h) * d.dk * d.dv;
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    const int i = w + kWarps * m;
    if (i < dk) out[i * d.dv + j] = alpha * acc[m];
  }
}

// One thread per state entry e of [H, dk, dv], sequential over the n pieces; the scan starts
// from `first` (null = zeros): out[0] forwards, out[n] in reverse.
__global__ void glr_state_scan_kernel(float* out, const float* first, const float* s_loc,
                                      const float* gamma, int64_t n, int64_t H, int64_t dk,
                                      int64_t dv, bool vector_decay, bool reverse) {
  const int64_t SS = H * dk * dv, GW = vector_decay ? dk : 1;
  RT_GRID_STRIDE(e, SS) {
    const int64_t h = e / (dk * dv), i = (e / dv) % dk;
    float cur = first ? first[e] : 0.0f;
    out[(reverse ? n : 0) * SS + e] = cur;
    for (int64_t step = 0; step < n; ++step) {
      const int64_t c = reverse ? n - 1 - step : step;
      const float a = expf(gamma[(c * H + h) * GW + (vector_decay ? i : 0)]);
      cur = a * cur + s_loc[c * SS + e];
      out[(reverse ? c : c + 1) * SS + e] = cur;
    }
  }
}

// The warp's dot product sum_i x[i] y[i] (times e^{b_ri - b_ji} when decayed: the vector decay)
// over n entries; every lane gets it. With a scalar decay the caller applies e^{b_r - b_j} once.
__device__ __forceinline__ float warp_dot(const float* x, const float* y, int64_t n,
                                          const HeadPiece& hp, bool decayed, int r, int j) {
  float s = 0.0f;
  for (int64_t i = threadIdx.x % 32; i < n; i += 32)
    s += x[i] * y[i] * (decayed ? hp.decay(r, j, static_cast<int>(i)) : 1.0f);
  return warp_sum(s);
}

// Scores of the query rows R .. R + rn - 1 against key rows: p[r][j] = P_{R+r, j} for j <= R + r
// (lower: transposed = false), or p[jj][r] = P_{r, R+jj} for r >= R + jj (transposed = true);
// zero elsewhere, over the piece's n columns. dscores: dP (scale dout . v) instead of P.
__device__ __forceinline__ void tile_scores(float (&p)[kTile][kPiece], const HeadPiece& hp,
                                            const float* q, const float* k, const float* v,
                                            const float* dout, int R, int rn, bool transposed,
                                            bool dscores) {
  const GlrDims& d = hp.d;
  for (int e = threadIdx.x / 32; e < rn * hp.n; e += kWarps) {  // one entry per warp
    const int a = e / hp.n, other = e % hp.n;
    const int r = transposed ? other : R + a, j = transposed ? R + a : other;
    float s = 0.0f;
    if (j <= r) {
      if (dscores) {
        s = d.scale * warp_dot(dout + hp.hv(r), v + hp.hv(j), d.dv, hp, false, r, j);
      } else {
        s = warp_dot(q + hp.qk(r), k + hp.qk(j), d.dk, hp, d.vector_decay, r, j);
        if (!d.vector_decay) s *= hp.decay(r, j, 0);
      }
    }
    if (threadIdx.x % 32 == 0) p[a][other] = s;
  }
}

// grid (pieces, H), block kBlock. o of the piece's rows, from S_p = piece_states[p].
__global__ void __launch_bounds__(kBlock)
    glr_piece_output_kernel(float* o, const float* q, const float* k, const float* v,
                            const double* b, const float* piece_states, GlrDims d) {
  __shared__ float qd[kTile][kMaxDk];  // q_r e^{b_r}
  __shared__ float p[kTile][kPiece];
  const HeadPiece hp(d, b, blockIdx.x, blockIdx.y);
  const int dk = static_cast<int>(d.dk), dv = static_cast<int>(d.dv);
  const float* S = piece_states + (blockIdx.x * d.H + hp.h) * d.dk * d.dv;
  for (int R = 0; R < hp.n; R += kTile) {
    const int rn = min(kTile, hp.n - R);
    __syncthreads();
    for (int e = threadIdx.x; e < rn * dk; e += kBlock) {
      const int r = e / dk, i = e % dk;
      qd[r][i] = q[hp.qk(R + r) + i] * hp.decay(R + r, -1, i);
    }
    tile_scores(p, hp, q, k, nullptr, nullptr, R, rn, false, false);
    __syncthreads();
    for (int e = threadIdx.x; e < rn * dv; e += kBlock) {
      const int r = e / dv, col = e % dv;
      float inter = 0.0f, intra = 0.0f;
      for (int i = 0; i < dk; ++i) inter += qd[r][i] * S[i * dv + col];
      for (int j = 0; j <= R + r; ++j) intra += p[r][j] * v[hp.hv(j) + col];
      o[hp.hv(R + r) + col] = d.scale * inter + d.scale * intra;
    }
  }
}

// grid (pieces, H), block kBlock. dv [T, H, dv] and each head's dq_head, dk_head [T, H, dk] of
// the piece's rows, from S_p = piece_states[p] and G_{p+1} = grads[p + 1].
__global__ void __launch_bounds__(kBlock)
    glr_piece_grad_kernel(float* dv, float* dq_head, float* dk_head, const float* q, const float* k,
                          const float* v, const float* dout, const double* b,
                          const float* piece_states, const float* grads, GlrDims d) {
  __shared__ float xd[kTile][kMaxDk];  // k_j e^{b_{n-1} - b_j}, then the state terms
  __shared__ float p[kTile][kPiece];
  const HeadPiece hp(d, b, blockIdx.x, blockIdx.y);
  const int dk = static_cast<int>(d.dk), dvn = static_cast<int>(d.dv), last = hp.n - 1;
  const int64_t state = (blockIdx.x * d.H + hp.h) * d.dk * d.dv, SS_all = d.H * d.dk * d.dv;
  const float* S = piece_states + state;
  const float* G = grads + SS_all + state;  // G_{p+1}

  // dv_j = scale sum_{r >= j} P_rj dout_r + kd_j^T G
  for (int J = 0; J < hp.n; J += kTile) {
    const int jn = min(kTile, hp.n - J);
    __syncthreads();
    for (int e = threadIdx.x; e < jn * dk; e += kBlock) {
      const int jj = e / dk, i = e % dk;
      xd[jj][i] = k[hp.qk(J + jj) + i] * hp.decay(last, J + jj, i);
    }
    tile_scores(p, hp, q, k, nullptr, nullptr, J, jn, true, false);
    __syncthreads();
    for (int e = threadIdx.x; e < jn * dvn; e += kBlock) {
      const int jj = e / dvn, col = e % dvn;
      float intra = 0.0f, inter = 0.0f;
      for (int r = J + jj; r < hp.n; ++r) intra += p[jj][r] * dout[hp.hv(r) + col];
      for (int i = 0; i < dk; ++i) inter += xd[jj][i] * G[i * dvn + col];
      dv[hp.hv(J + jj) + col] = d.scale * intra + inter;
    }
  }
  // dq_r = e^{b_r} (scale S dout_r) + sum_{j <= r} dP_rj k_j e^{b_r - b_j}
  // (The state terms S dout_r and G v_j are warp dot products over the rows of S and G, which
  // are contiguous, staged in xd.)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int R = 0; R < hp.n; R += kTile) {
    const int rn = min(kTile, hp.n - R);
    __syncthreads();
    tile_scores(p, hp, nullptr, nullptr, v, dout, R, rn, false, true);
    for (int e = warp; e < rn * dk; e += kWarps) {
      const float x =
          warp_dot(S + (e % dk) * d.dv, dout + hp.hv(R + e / dk), d.dv, hp, false, 0, 0);
      if (lane == 0) xd[e / dk][e % dk] = x;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < rn * dk; e += kBlock) {
      const int r = e / dk, i = e % dk;
      float intra = 0.0f;
      for (int j = 0; j <= R + r; ++j) intra += p[r][j] * hp.decay(R + r, j, i) * k[hp.qk(j) + i];
      dq_head[hp.hk(R + r) + i] = d.scale * xd[r][i] * hp.decay(R + r, -1, i) + intra;
    }
  }
  // dk_j = e^{b_{n-1} - b_j} (G v_j) + sum_{r >= j} dP_rj q_r e^{b_r - b_j}
  for (int J = 0; J < hp.n; J += kTile) {
    const int jn = min(kTile, hp.n - J);
    __syncthreads();
    tile_scores(p, hp, nullptr, nullptr, v, dout, J, jn, true, true);
    for (int e = warp; e < jn * dk; e += kWarps) {
      const float x = warp_dot(G + (e % dk) * d.dv, v + hp.hv(J + e / dk), d.dv, hp, false, 0, 0);
      if (lane == 0) xd[e / dk][e % dk] = x;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < jn * dk; e += kBlock) {
      const int jj = e / dk, i = e % dk;
      float intra = 0.0f;
      for (int r = J + jj; r < hp.n; ++r)
        intra += p[jj][r] * hp.decay(r, J + jj, i) * q[hp.qk(r) + i];
      dk_head[hp.hk(J + jj) + i] = xd[jj][i] * hp.decay(last, J + jj, i) + intra;
    }
  }
}

// states [chunks + 1, H, dk, dv] = the piece states entering every per-th piece.
__global__ void glr_gather_states_kernel(float* states, const float* piece_states, int64_t chunks,
                                         int64_t per, int64_t SS_all) {
  RT_GRID_STRIDE(e, (chunks + 1) * SS_all) {
    const int64_t c = e / SS_all;
    states[e] = piece_states[c * per * SS_all + e % SS_all];
  }
}

// dq, dk [T, Hg, dk] = sums of the per-head dq_head, dk_head [T, H, dk] over each group's heads,
// in head order (Hg < H).
__global__ void glr_group_sum_kernel(float* dq, float* dk, const float* dq_head,
                                     const float* dk_head, GlrDims d) {
  const int64_t per = d.H / d.Hg;
  RT_GRID_STRIDE(e, d.T * d.Hg * d.dk) {
    const int64_t i = e % d.dk, hg = (e / d.dk) % d.Hg, t = e / (d.dk * d.Hg);
    float x = 0.0f, y = 0.0f;
    for (int64_t r = 0; r < per; ++r) {
      const int64_t idx = (t * d.H + hg * per + r) * d.dk + i;
      x += dq_head[idx];
      y += dk_head[idx];
    }
    dq[e] = x;
    dk[e] = y;
  }
}

// terms [T, H, GW] (double) = sum over the channel's rows of q dq_head - k dk_head.
__global__ void glr_dg_terms_kernel(double* terms, const float* q, const float* k,
                                    const float* dq_head, const float* dk_head, GlrDims d) {
  const int64_t GW = d.vector_decay ? d.dk : 1, per = d.H / d.Hg;
  RT_GRID_STRIDE(e, d.T * d.H * GW) {
    const int64_t ch = e % GW, h = (e / GW) % d.H, t = e / (GW * d.H), hg = h / per;
    const int64_t lo = d.vector_decay ? ch : 0, hi = d.vector_decay ? ch + 1 : d.dk;
    double x = 0.0;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t qk = (t * d.Hg + hg) * d.dk + i, hd = (t * d.H + h) * d.dk + i;
      x += static_cast<double>(q[qk]) * dq_head[hd] - static_cast<double>(k[qk]) * dk_head[hd];
    }
    terms[e] = x;
  }
}

// dg restarts at every piece from its anchor, sum_v S_{p+1} * G_{p+1} over the channel's rows
// (the state after the piece and its gradient): that equals the suffix sum of every later term
// plus the final-state term (kernels/cpu/glr.cpp says why) but carries the rounding of one
// piece, not of the whole sequence. One warp per (piece, head, channel), its lanes over the
// channel's contiguous entries (coalesced), in double, summed by a fixed shuffle tree.
__global__ void glr_dg_anchor_kernel(double* anchors, const float* piece_states, const float* grads,
                                     GlrDims d, int64_t pieces) {
  const int64_t GW = d.vector_decay ? d.dk : 1, SS_all = d.H * d.dk * d.dv;
  RT_GRID_STRIDE(i, pieces * d.H * GW * 32) {  // whole warps: n and the stride are multiples of 32
    const int64_t e = i / 32, ch = e % GW, h = (e / GW) % d.H, p = e / (GW * d.H);
    const int lane = static_cast<int>(i % 32);
    const int64_t lo = (d.vector_decay ? ch : 0) * d.dv,
                  hi = (d.vector_decay ? ch + 1 : d.dk) * d.dv;
    const float* S = piece_states + (p + 1) * SS_all + h * d.dk * d.dv;
    const float* G = grads + (p + 1) * SS_all + h * d.dk * d.dv;
    double acc = 0.0;
    for (int64_t x = lo + lane; x < hi; x += 32) acc += static_cast<double>(S[x]) * G[x];
    acc = warp_sum(acc);
    if (lane == 0) anchors[e] = acc;
  }
}

// One thread per (piece, head, channel): dg over the piece's rows, from its anchor.
__global__ void glr_dg_piece_scan_kernel(float* dg, const double* terms, const double* anchors,
                                         GlrDims d, int64_t pieces) {
  const int64_t GW = d.vector_decay ? d.dk : 1;
  RT_GRID_STRIDE(e, pieces * d.H * GW) {
    const int64_t ch = e % GW, h = (e / GW) % d.H;
    const HeadPiece hp(d, nullptr, e / (GW * d.H), h);
    double suffix = anchors[e];
    for (int r = hp.n - 1; r >= 0; --r) {
      const int64_t x = ((hp.t0 + r) * d.H + h) * GW + ch;
      suffix += terms[x];
      dg[x] = static_cast<float>(suffix);
    }
  }
}

// gamma [H, GW]: the total decay, the pieces' own totals (b at each piece's last row, in double)
// added in double: pieces steps per thread, not T.
__global__ void glr_gamma_kernel(float* gamma, const double* b, GlrDims d, int64_t pieces) {
  const int64_t GW = d.vector_decay ? d.dk : 1;
  RT_GRID_STRIDE(e, d.H * GW) {
    const int64_t ch = e % GW, h = e / GW;
    double total = 0.0;
    for (int64_t p = 0; p < pieces; ++p) {
      const HeadPiece hp(d, b, p, h);
      if (hp.n > 0) total += hp.cum(hp.n - 1, static_cast<int>(ch));
    }
    gamma[e] = static_cast<float>(total);
  }
}

void check_dims(const GlrDims& d) {
  RT_CHECK(d.dk >= 1 && d.dk <= kMaxDk, "glr (CUDA): dk ", d.dk, " outside 1..", kMaxDk);
  RT_CHECK(d.dv >= 1 && d.H >= 1 && d.Hg >= 1 && d.H % d.Hg == 0 && d.T >= 0 && d.chunk >= 1,
           "glr (CUDA): bad dimensions");
  RT_CHECK(d.H <= 65535 && ceil_div(d.dv, 32) <= 65535, "glr (CUDA): ", d.H, " heads or dv ", d.dv,
           " exceed the grid");
}

// What every GLR op starts from: the pieces' cumulative decays and gammas, and their count.
class PieceDecay {
 public:
  PieceDecay(const float* g, const GlrDims& d)
      : n_(piece_count(d)),
        b_(static_cast<size_t>(d.T * d.H * gw(d)) * sizeof(double)),
        gamma_(static_cast<size_t>(n_ * d.H * gw(d)) * sizeof(float)) {
    launch(glr_piece_decay_kernel, n_ * d.H * gw(d), b_.as<double>(), gamma_.as<float>(), g, d, n_);
  }
  int64_t pieces() const { return n_; }
  const double* b() const { return b_.as<double>(); }
  const float* gamma() const { return gamma_.as<float>(); }

 private:
  static int64_t gw(const GlrDims& d) { return d.vector_decay ? d.dk : 1; }
  int64_t n_;
  Scratch b_, gamma_;
};

// Per piece: the state from zero (forward: x = k, y = v) or the local state gradient
// (x = q, y = dout), s_loc [pieces, H, dk, dv].
void piece_states_local(float* s_loc, const float* x, const float* y, const PieceDecay& pd,
                        const GlrDims& d, bool forward) {
  if (pd.pieces() == 0) return;
  const dim3 grid(static_cast<unsigned>(pd.pieces()), static_cast<unsigned>(d.H),
                  static_cast<unsigned>(ceil_div(d.dv, 32)));
  glr_piece_state_kernel<<<grid, kBlock, 0, compute_stream()>>>(s_loc, x, y, pd.b(), d, forward,
                                                                forward ? 1.0f : d.scale);
  RT_CUDA_LAUNCHED();
}

void scan(float* out, const float* first, const float* s_loc, const PieceDecay& pd,
          const GlrDims& d, bool reverse) {
  launch(glr_state_scan_kernel, d.H * d.dk * d.dv, out, first, s_loc, pd.gamma(), pd.pieces(), d.H,
         d.dk, d.dv, d.vector_decay, reverse);
}

void copy_device(float* dst, const float* src, int64_t n) {
  RT_CUDA(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float),
                          cudaMemcpyDeviceToDevice, compute_stream()));
}

// The states entering every piece and the final one, [pieces + 1, H, dk, dv], from h0 (null =
// zeros), into `out`. The pieces' own states go into out[1..] first and the scan replaces each
// with the state after the piece in place (a thread reads an entry before it writes it).
void forward_piece_states(float* out, const float* k, const float* v, const float* h0,
                          const PieceDecay& pd, const GlrDims& d) {
  float* local = out + d.H * d.dk * d.dv;
  piece_states_local(local, k, v, pd, d, true);
  scan(out, h0, local, pd, d, false);
}

// The gradients of the states entering every piece and the final one, from dh_final (null =
// zeros): [pieces + 1, H, dk, dv] into `out`, in place as above (local gradients in out[..n-1]).
void backward_piece_grads(float* out, const float* q, const float* dout, const float* dh_final,
                          const PieceDecay& pd, const GlrDims& d) {
  piece_states_local(out, q, dout, pd, d, false);
  scan(out, dh_final, out, pd, d, true);
}

size_t all_states_bytes(const PieceDecay& pd, const GlrDims& d) {
  return static_cast<size_t>((pd.pieces() + 1) * d.H * d.dk * d.dv) * sizeof(float);
}

}  // namespace

void glr_forward(float* o, float* h_final, float* states, const float* q, const float* k,
                 const float* v, const float* g, const float* h0, const GlrDims& d) {
  check_dims(d);
  const PieceDecay pd(g, d);
  const int64_t SS_all = d.H * d.dk * d.dv, per = pieces_per_chunk(d);
  // With one piece per chunk the piece states are the contract's states.
  const bool direct = states && per == 1;
  Scratch own(direct ? 0 : all_states_bytes(pd, d));
  float* all = direct ? states : own.as<float>();
  forward_piece_states(all, k, v, h0, pd, d);
  if (states && !direct)
    launch(glr_gather_states_kernel, (ceil_div(d.T, d.chunk) + 1) * SS_all, states, all,
           ceil_div(d.T, d.chunk), per, SS_all);
  if (h_final) copy_device(h_final, all + pd.pieces() * SS_all, SS_all);
  if (o && pd.pieces() > 0) {
    const dim3 grid(static_cast<unsigned>(pd.pieces()), static_cast<unsigned>(d.H));
    glr_piece_output_kernel<<<grid, kBlock, 0, compute_stream()>>>(o, q, k, v, pd.b(), all, d);
    RT_CUDA_LAUNCHED();
  }
}

void glr_backward(float* dq, float* dk, float* dv, float* dg, float* dh0, const float* q,
                  const float* k, const float* v, const float* g, const float* states,
                  const float* dout, const float* dh_final, const GlrDims& d) {
  check_dims(d);
  const PieceDecay pd(g, d);
  const int64_t SS_all = d.H * d.dk * d.dv, thk = d.T * d.H * d.dk, GW = d.vector_decay ? d.dk : 1;
  // The states entering each piece: the forward's when pieces are chunks, else recomputed from
  // states[0] = h0 by the same kernels (the same bits as the forward's).
  Scratch own(pieces_per_chunk(d) == 1 ? 0 : all_states_bytes(pd, d));
  if (pieces_per_chunk(d) > 1) forward_piece_states(own.as<float>(), k, v, states, pd, d);
  const float* piece_states = pieces_per_chunk(d) == 1 ? states : own.as<float>();
  Scratch grads(all_states_bytes(pd, d));
  backward_piece_grads(grads.as<float>(), q, dout, dh_final, pd, d);
  if (dh0) copy_device(dh0, grads.as<float>(), SS_all);

  // Each head's own dq, dk: the outputs themselves unless heads share q/k groups.
  const bool grouped = d.Hg < d.H;
  Scratch dq_own(grouped ? static_cast<size_t>(thk) * sizeof(float) : 0);
  Scratch dk_own(grouped ? static_cast<size_t>(thk) * sizeof(float) : 0);
  float* dq_head = grouped ? dq_own.as<float>() : dq;
  float* dk_head = grouped ? dk_own.as<float>() : dk;
  const int64_t n = pd.pieces();
  if (n > 0) {
    const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(d.H));
    glr_piece_grad_kernel<<<grid, kBlock, 0, compute_stream()>>>(
        dv, dq_head, dk_head, q, k, v, dout, pd.b(), piece_states, grads.as<float>(), d);
    RT_CUDA_LAUNCHED();
  }
  if (grouped) launch(glr_group_sum_kernel, d.T * d.Hg * d.dk, dq, dk, dq_head, dk_head, d);
  Scratch terms(static_cast<size_t>(d.T * d.H * GW) * sizeof(double));
  Scratch anchors(static_cast<size_t>(std::max<int64_t>(n, 1) * d.H * GW) * sizeof(double));
  launch(glr_dg_terms_kernel, d.T * d.H * GW, terms.as<double>(), q, k, dq_head, dk_head, d);
  launch(glr_dg_anchor_kernel, n * d.H * GW * 32, anchors.as<double>(), piece_states,
         grads.as<float>(), d, n);
  launch(glr_dg_piece_scan_kernel, n * d.H * GW, dg, terms.as<double>(), anchors.as<double>(), d,
         n);
}

void glr_chunk_summary(float* s_loc, float* gamma, const float* k, const float* v, const float* g,
                       const GlrDims& d) {
  check_dims(d);
  const PieceDecay pd(g, d);
  Scratch all(all_states_bytes(pd, d));
  forward_piece_states(all.as<float>(), k, v, nullptr, pd, d);
  copy_device(s_loc, all.as<float>() + pd.pieces() * d.H * d.dk * d.dv, d.H * d.dk * d.dv);
  const int64_t GW = d.vector_decay ? d.dk : 1;
  launch(glr_gamma_kernel, d.H * GW, gamma, pd.b(), d, pd.pieces());
}

void glr_state_gradient(float* ds, const float* q, const float* g, const float* dout,
                        const GlrDims& d) {
  check_dims(d);
  const PieceDecay pd(g, d);
  Scratch grads(all_states_bytes(pd, d));
  backward_piece_grads(grads.as<float>(), q, dout, nullptr, pd, d);
  copy_device(ds, grads.as<float>(), d.H * d.dk * d.dv);
}

void glr_state_scan(float* out, const float* s_loc, const float* gamma, int64_t n, int64_t H,
                    int64_t dk, int64_t dv, bool vector_decay, bool reverse) {
  launch(glr_state_scan_kernel, H * dk * dv, out, static_cast<const float*>(nullptr), s_loc, gamma,
         n, H, dk, dv, vector_decay, reverse);
}

}  // namespace rt::cuda
