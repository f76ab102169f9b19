// The gated linear recurrence (GLR) on the GPU, in its exact sequential form (a first version;
// the chunked tensor-core form comes later). Per head h, q/k group hg = h / (H / Hg):
//   S_t = Diag(a_t) S_{t-1} + k_t v_t^T,  a_t = exp(g_t),  o_t = scale * S_t^T q_t,  S_{-1} = h0
// Shapes (row-major, f32):
//   q, k [T, Hg, dk]   v, o, dout [T, H, dv]   g [T, H, dk] (vector decay) or [T, H] (scalar)
//   h0, h_final, dh_final, dh0, s_loc, ds [H, dk, dv]   states [ceil(T/chunk) + 1, H, dk, dv]
//   gamma [H, dk] or [H]
//
// Schedule. A recurrence block (256 threads) owns one head and a tile of 32 state columns j
// (lane = column); its 8 warps split the dk rows (warp w holds rows w, w + 8, ...), so each
// thread keeps at most 32 state entries in registers: dk <= 256, dv any size (column tiles).
// Time runs sequentially inside the block, 8 steps at a time staged in shared memory (q_t, k_t
// and a_t of those steps).
//   glr_forward        grid (dv/32, H). o_t's sum over rows: per-warp partials in shared
//                      memory, added in warp order. The state entering each chunk goes to
//                      states[c] (chunk only matters for that layout), the final one to
//                      states[n] and h_final.
//   glr_chunk_summary  the forward without outputs (h_final = s_loc, from zero), and one thread
//                      per (head, decay channel) for gamma: each chunk's sum in double, added up
//                      in f32 as the CPU does.
//   glr_backward, four passes:
//     1 dq             grid (chunks, dv/32, H): S restarted from states[c]; dq_t = scale S_t
//                      dout_t, a warp sum over the tile's columns -> per-tile partials
//                      [tiles, T, H, dk] in scratch.
//     2 reverse        grid (dv/32, H): G_t = dL/dS_t, from G = dh_final backwards,
//                      G_t = Diag(a_{t+1}) G_{t+1} + scale q_t dout_t^T; dv_t = G_t^T k_t
//                      (complete in the block: partials over warps added in warp order),
//                      dk_t = G_t v_t (per-tile partials), dh0 = Diag(a_0) G_0.
//     3 reductions     each head's dq, dk = sum over tiles in tile order; the dq, dk of a q/k
//                      group = sum over its heads in head order (no atomics anywhere).
//     4 dg             the CPU's identity, per (head, decay channel), in double:
//                        dg_t = sum_{t' >= t} (q_t' dq_t' - k_t' dk_t') + sum_j S_final dh_final
//                      with the head's own dq, dk (summed over dk as well for a scalar decay).
//   glr_state_gradient pass 2 without k, v and from a zero dh_final: ds = the gradient that
//                      reaches h0 through the piece's outputs.
//   glr_state_scan     one thread per state entry, sequential over the pieces.
// Every factor a_t = exp(g_t) <= 1, so the sequential form needs no exponent differences.
// All reductions run in a fixed order: a run is bitwise reproducible on one GPU.
#include <algorithm>

#include "kernels/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rt::cuda {

namespace {

constexpr int kLanes = 32;                 // state columns per block, one per lane
constexpr int kWarps = 8;                  // row groups: warp w holds rows w, w + kWarps, ...
constexpr int kBlock = kLanes * kWarps;    // threads of a recurrence block
constexpr int kSteps = 8;                  // time steps staged in shared memory at once
constexpr int kMaxDk = 256;
constexpr int kRows = kMaxDk / kWarps;     // state entries per thread (registers)

// q_t, k_t (the group's rows) and a_t = exp(g_t) per row, for kSteps time steps. A scalar
// decay is broadcast over the rows so that both kinds share the code below.
struct Stage {
  float q[kSteps][kMaxDk];
  float k[kSteps][kMaxDk];
  float a[kSteps][kMaxDk];
};

// Stages steps t0 .. t0 + n - 1 into slots 0 .. n - 1; q or k null: not staged.
__device__ __forceinline__ void stage_steps(Stage& st, const float* q, const float* k,
                                            const float* g, const GlrDims& d, int64_t h,
                                            int64_t hg, int64_t t0, int n) {
  const int dk = static_cast<int>(d.dk);
  for (int e = threadIdx.x; e < n * dk; e += blockDim.x) {
    const int s = e / dk, i = e % dk;
    const int64_t t = t0 + s;
    const int64_t qk = (t * d.Hg + hg) * d.dk + i;
    if (q) st.q[s][i] = q[qk];
    if (k) st.k[s][i] = k[qk];
    st.a[s][i] = expf(d.vector_decay ? g[(t * d.H + h) * d.dk + i] : g[t * d.H + h]);
  }
}

// The thread's state entries (rows w + kWarps m of column j) from / to a [dk, dv] matrix;
// src null = zeros.
__device__ __forceinline__ void load_state(float (&s)[kRows], const float* src, int w,
                                           int64_t j, bool col, const GlrDims& d) {
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    const int i = w + kWarps * m;
    s[m] = (src && col && i < d.dk) ? src[i * d.dv + j] : 0.0f;
  }
}

__device__ __forceinline__ void store_state(float* dst, const float (&s)[kRows], int w,
                                            int64_t j, bool col, const GlrDims& d) {
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    const int i = w + kWarps * m;
    if (col && i < d.dk) dst[i * d.dv + j] = s[m];
  }
}

// grid (ceil(dv / 32), H), block kBlock. o, h_final, states, h0 may be null (q too when o is).
__global__ void __launch_bounds__(kBlock)
    glr_forward_kernel(float* o, float* h_final, float* states, const float* q, const float* k,
                       const float* v, const float* g, const float* h0, GlrDims d) {
  __shared__ Stage st;
  __shared__ float part[kSteps][kWarps][kLanes];  // o's partial sums, per warp
  const int lane = threadIdx.x % kLanes, w = threadIdx.x / kLanes;
  const int64_t h = blockIdx.y, hg = h / (d.H / d.Hg);
  const int64_t j = blockIdx.x * int64_t(kLanes) + lane;
  const bool col = j < d.dv;
  const int64_t SS = d.dk * d.dv;

  float s[kRows];
  load_state(s, h0 ? h0 + h * SS : nullptr, w, j, col, d);
  for (int64_t t0 = 0; t0 < d.T; t0 += kSteps) {
    const int n = static_cast<int>(d.T - t0 < kSteps ? d.T - t0 : kSteps);
    __syncthreads();  // the previous steps' stage and partials have been read
    stage_steps(st, o ? q : nullptr, k, g, d, h, hg, t0, n);
    __syncthreads();
    for (int r = 0; r < n; ++r) {
      const int64_t t = t0 + r;
      if (states && t % d.chunk == 0) store_state(states + (t / d.chunk * d.H + h) * SS, s, w, j, col, d);
      const float vt = col ? v[(t * d.H + h) * d.dv + j] : 0.0f;
      float acc = 0.0f;
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const int i = w + kWarps * m;
        if (i < d.dk) {
          s[m] = st.a[r][i] * s[m] + st.k[r][i] * vt;
          if (o) acc += s[m] * st.q[r][i];
        }
      }
      part[r][w][lane] = acc;
    }
    if (o) {
      __syncthreads();
      if (w == 0 && col) {
        for (int r = 0; r < n; ++r) {
          float sum = 0.0f;
          for (int ww = 0; ww < kWarps; ++ww) sum += part[r][ww][lane];
          o[((t0 + r) * d.H + h) * d.dv + j] = d.scale * sum;
        }
      }
    }
  }
  if (states) {
    const int64_t chunks = (d.T + d.chunk - 1) / d.chunk;
    store_state(states + (chunks * d.H + h) * SS, s, w, j, col, d);
  }
  if (h_final) store_state(h_final + h * SS, s, w, j, col, d);
}

// Backward pass 1. grid (chunks, ceil(dv / 32), H), block kBlock.
// dq_part[tile][t][h][i] = scale * sum over the tile's columns j of S_t[i][j] dout_t[j].
__global__ void __launch_bounds__(kBlock)
    glr_dq_kernel(float* dq_part, const float* states, const float* k, const float* v,
                  const float* g, const float* dout, GlrDims d) {
  __shared__ Stage st;
  const int lane = threadIdx.x % kLanes, w = threadIdx.x / kLanes;
  const int64_t c = blockIdx.x, tile = blockIdx.y, h = blockIdx.z, hg = h / (d.H / d.Hg);
  const int64_t j = tile * kLanes + lane;
  const bool col = j < d.dv;
  const int64_t SS = d.dk * d.dv;
  float* part = dq_part + tile * d.T * d.H * d.dk;

  float s[kRows];
  load_state(s, states + (c * d.H + h) * SS, w, j, col, d);
  const int64_t begin = c * d.chunk, end = begin + d.chunk < d.T ? begin + d.chunk : d.T;
  for (int64_t t0 = begin; t0 < end; t0 += kSteps) {
    const int n = static_cast<int>(end - t0 < kSteps ? end - t0 : kSteps);
    __syncthreads();
    stage_steps(st, nullptr, k, g, d, h, hg, t0, n);
    __syncthreads();
    for (int r = 0; r < n; ++r) {
      const int64_t t = t0 + r;
      const float vt = col ? v[(t * d.H + h) * d.dv + j] : 0.0f;
      const float dot = col ? d.scale * dout[(t * d.H + h) * d.dv + j] : 0.0f;
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const int i = w + kWarps * m;
        if (i < d.dk) {  // the same for the whole warp: every lane takes part in the sum
          s[m] = st.a[r][i] * s[m] + st.k[r][i] * vt;
          const float x = warp_sum(s[m] * dot);
          if (lane == 0) part[(t * d.H + h) * d.dk + i] = x;
        }
      }
    }
  }
}

// Backward pass 2 (and the state gradient). grid (ceil(dv / 32), H), block kBlock.
// G runs backwards from dh_final (null = zeros). With dk_part: dk_part[tile][t][h][i] = the
// tile's part of G_t v_t (needs v). With dv: dv_t = G_t^T k_t (needs k). dh0 = Diag(a_0) G_0
// when not null.
__global__ void __launch_bounds__(kBlock)
    glr_reverse_kernel(float* dk_part, float* dv, float* dh0, const float* q, const float* k,
                       const float* v, const float* g, const float* dout,
                       const float* dh_final, GlrDims d) {
  __shared__ Stage st;
  __shared__ float part[kSteps][kWarps][kLanes];  // dv's partial sums, per warp
  const int lane = threadIdx.x % kLanes, w = threadIdx.x / kLanes;
  const int64_t tile = blockIdx.x, h = blockIdx.y, hg = h / (d.H / d.Hg);
  const int64_t j = tile * kLanes + lane;
  const bool col = j < d.dv;
  const int64_t SS = d.dk * d.dv;
  float* dk_tile = dk_part ? dk_part + tile * d.T * d.H * d.dk : nullptr;

  float G[kRows];
  load_state(G, dh_final ? dh_final + h * SS : nullptr, w, j, col, d);
  for (int64_t end = d.T; end > 0; end -= kSteps) {
    const int64_t t0 = end > kSteps ? end - kSteps : 0;
    const int n = static_cast<int>(end - t0);
    __syncthreads();
    stage_steps(st, q, dv ? k : nullptr, g, d, h, hg, t0, n);
    __syncthreads();
    for (int r = n - 1; r >= 0; --r) {
      const int64_t t = t0 + r;
      const float dot = col ? d.scale * dout[(t * d.H + h) * d.dv + j] : 0.0f;
      const float vt = (dk_tile && col) ? v[(t * d.H + h) * d.dv + j] : 0.0f;
      float acc = 0.0f;
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const int i = w + kWarps * m;
        if (i < d.dk) {  // the same for the whole warp: every lane takes part in the sum
          G[m] += st.q[r][i] * dot;  // G_t
          if (dk_tile) {
            const float x = warp_sum(G[m] * vt);
            if (lane == 0) dk_tile[(t * d.H + h) * d.dk + i] = x;
          }
          if (dv) acc += G[m] * st.k[r][i];
          G[m] *= st.a[r][i];  // Diag(a_t) G_t: G_{t-1}'s share from later steps
        }
      }
      part[r][w][lane] = acc;
    }
    if (dv) {
      __syncthreads();
      if (w == 0 && col) {
        for (int r = 0; r < n; ++r) {
          float sum = 0.0f;
          for (int ww = 0; ww < kWarps; ++ww) sum += part[r][ww][lane];
          dv[((t0 + r) * d.H + h) * d.dv + j] = sum;
        }
      }
    }
  }
  if (dh0) store_state(dh0 + h * SS, G, w, j, col, d);
}

// a[e] = sum over tiles of a[tile * n + e] (tile order), likewise b: tile 0 receives the sums.
__global__ void glr_sum_tiles_kernel(float* a, float* b, int64_t tiles, int64_t n) {
  RT_GRID_STRIDE(e, n) {
    float x = a[e], y = b[e];
    for (int64_t tile = 1; tile < tiles; ++tile) {
      x += a[tile * n + e];
      y += b[tile * n + e];
    }
    a[e] = x;
    b[e] = y;
  }
}

// dq, dk [T, Hg, dk] = sums of the per-head dq_head, dk_head [T, H, dk] over each group's heads,
// in head order (a copy when Hg == H).
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

// One thread per (head, decay channel): dg_t = suffix sum of the terms from the end, starting
// from the final-state term sum S_final * dh_final over the channel's rows (none without
// dh_final).
__global__ void glr_dg_scan_kernel(float* dg, const double* terms, const float* s_final,
                                   const float* dh_final, GlrDims d) {
  const int64_t GW = d.vector_decay ? d.dk : 1, SS = d.dk * d.dv;
  RT_GRID_STRIDE(e, d.H * GW) {
    const int64_t ch = e % GW, h = e / GW;
    double suffix = 0.0;
    if (dh_final) {
      const int64_t lo = d.vector_decay ? ch : 0, hi = d.vector_decay ? ch + 1 : d.dk;
      for (int64_t i = lo; i < hi; ++i)
        for (int64_t j = 0; j < d.dv; ++j) {
          const int64_t x = h * SS + i * d.dv + j;
          suffix += static_cast<double>(s_final[x]) * dh_final[x];
        }
    }
    for (int64_t t = d.T - 1; t >= 0; --t) {
      const int64_t x = (t * d.H + h) * GW + ch;
      suffix += terms[x];
      dg[x] = static_cast<float>(suffix);
    }
  }
}

// gamma [H, GW]: per chunk the cumulative decay in double (as the CPU's b), the chunks' totals
// added in f32 in chunk order.
__global__ void glr_gamma_kernel(float* gamma, const float* g, GlrDims d) {
  const int64_t GW = d.vector_decay ? d.dk : 1;
  RT_GRID_STRIDE(e, d.H * GW) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < d.T; c0 += d.chunk) {
      const int64_t end = c0 + d.chunk < d.T ? c0 + d.chunk : d.T;
      double acc = 0.0;
      for (int64_t t = c0; t < end; ++t) acc += g[t * d.H * GW + e];
      total += static_cast<float>(acc);
    }
    gamma[e] = total;
  }
}

// One thread per state entry e of [H, dk, dv], sequential over the n pieces.
__global__ void glr_state_scan_kernel(float* out, const float* s_loc, const float* gamma,
                                      int64_t n, int64_t H, int64_t dk, int64_t dv,
                                      bool vector_decay, bool reverse) {
  const int64_t SS = H * dk * dv, GW = vector_decay ? dk : 1;
  RT_GRID_STRIDE(e, SS) {
    const int64_t h = e / (dk * dv), i = (e / dv) % dk;
    float cur = 0.0f;
    out[(reverse ? n : 0) * SS + e] = cur;
    for (int64_t step = 0; step < n; ++step) {
      const int64_t c = reverse ? n - 1 - step : step;
      const float a = expf(gamma[(c * H + h) * GW + (vector_decay ? i : 0)]);
      cur = a * cur + s_loc[c * SS + e];
      out[(reverse ? c : c + 1) * SS + e] = cur;
    }
  }
}

void check_dims(const GlrDims& d) {
  RT_CHECK(d.dk >= 1 && d.dk <= kMaxDk, "glr (CUDA): dk ", d.dk, " outside 1..", kMaxDk);
  RT_CHECK(d.dv >= 1 && d.H >= 1 && d.Hg >= 1 && d.H % d.Hg == 0 && d.T >= 0 && d.chunk >= 1,
           "glr (CUDA): bad dimensions");
  RT_CHECK(d.H <= 65535, "glr (CUDA): ", d.H, " heads exceed the grid");
}

unsigned column_tiles(const GlrDims& d) { return static_cast<unsigned>(ceil_div(d.dv, kLanes)); }

}  // namespace

void glr_forward(float* o, float* h_final, float* states, const float* q, const float* k,
                 const float* v, const float* g, const float* h0, const GlrDims& d) {
  check_dims(d);
  const dim3 grid(column_tiles(d), static_cast<unsigned>(d.H));
  glr_forward_kernel<<<grid, kBlock, 0, compute_stream()>>>(o, h_final, states, q, k, v, g, h0, d);
  RT_CUDA_LAUNCHED();
}

void glr_backward(float* dq, float* dk, float* dv, float* dg, float* dh0, const float* q,
                  const float* k, const float* v, const float* g, const float* states,
                  const float* dout, const float* dh_final, const GlrDims& d) {
  check_dims(d);
  const int64_t tiles = column_tiles(d), chunks = ceil_div(d.T, d.chunk);
  const int64_t thk = d.T * d.H * d.dk, GW = d.vector_decay ? d.dk : 1;
  cudaStream_t stream = compute_stream();
  Scratch dq_part(static_cast<size_t>(tiles * thk) * sizeof(float));
  Scratch dk_part(static_cast<size_t>(tiles * thk) * sizeof(float));
  Scratch terms(static_cast<size_t>(d.T * d.H * GW) * sizeof(double));

  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(tiles),
                    static_cast<unsigned>(d.H));
    glr_dq_kernel<<<grid, kBlock, 0, stream>>>(dq_part.as<float>(), states, k, v, g, dout, d);
    RT_CUDA_LAUNCHED();
  }
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(d.H));
  glr_reverse_kernel<<<grid, kBlock, 0, stream>>>(dk_part.as<float>(), dv, dh0, q, k, v, g, dout,
                                                  dh_final, d);
  RT_CUDA_LAUNCHED();
  if (tiles > 1) {
    glr_sum_tiles_kernel<<<blocks_for(thk), kThreads, 0, stream>>>(dq_part.as<float>(),
                                                                   dk_part.as<float>(), tiles, thk);
    RT_CUDA_LAUNCHED();
  }
  glr_group_sum_kernel<<<blocks_for(d.T * d.Hg * d.dk), kThreads, 0, stream>>>(
      dq, dk, dq_part.as<float>(), dk_part.as<float>(), d);
  RT_CUDA_LAUNCHED();
  glr_dg_terms_kernel<<<blocks_for(d.T * d.H * GW), kThreads, 0, stream>>>(
      terms.as<double>(), q, k, dq_part.as<float>(), dk_part.as<float>(), d);
  RT_CUDA_LAUNCHED();
  glr_dg_scan_kernel<<<blocks_for(d.H * GW), kThreads, 0, stream>>>(
      dg, terms.as<double>(), states + chunks * d.H * d.dk * d.dv, dh_final, d);
  RT_CUDA_LAUNCHED();
}

void glr_chunk_summary(float* s_loc, float* gamma, const float* k, const float* v, const float* g,
                       const GlrDims& d) {
  check_dims(d);
  const dim3 grid(column_tiles(d), static_cast<unsigned>(d.H));
  glr_forward_kernel<<<grid, kBlock, 0, compute_stream()>>>(nullptr, s_loc, nullptr, nullptr, k,
                                                            v, g, nullptr, d);
  RT_CUDA_LAUNCHED();
  const int64_t GW = d.vector_decay ? d.dk : 1;
  glr_gamma_kernel<<<blocks_for(d.H * GW), kThreads, 0, compute_stream()>>>(gamma, g, d);
  RT_CUDA_LAUNCHED();
}

void glr_state_gradient(float* ds, const float* q, const float* g, const float* dout,
                        const GlrDims& d) {
  check_dims(d);
  const dim3 grid(column_tiles(d), static_cast<unsigned>(d.H));
  glr_reverse_kernel<<<grid, kBlock, 0, compute_stream()>>>(nullptr, nullptr, ds, q, nullptr,
                                                            nullptr, g, dout, nullptr, d);
  RT_CUDA_LAUNCHED();
}

void glr_state_scan(float* out, const float* s_loc, const float* gamma, int64_t n, int64_t H,
                    int64_t dk, int64_t dv, bool vector_decay, bool reverse) {
  glr_state_scan_kernel<<<blocks_for(H * dk * dv), kThreads, 0, compute_stream()>>>(
      out, s_loc, gamma, n, H, dk, dv, vector_decay, reverse);
  RT_CUDA_LAUNCHED();
}

}  // namespace rt::cuda
