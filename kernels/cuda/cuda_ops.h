// CUDA implementations behind kernels/ops.h: raw device pointers, sizes already checked by
// ops.cpp; the same names and arguments as kernels/cpu/cpu_ops.h, so that ops.cpp dispatches
// with one line. The contracts (shapes, what accumulates) are documented in kernels/ops.h.
// Every kernel runs on rt::cuda::compute_stream(); results that return to the host (a loss, a
// norm) synchronise that stream. f32 in and out, f32 accumulation (double where the CPU op
// uses double), and reductions in a fixed order, so a run is deterministic on one GPU.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_ops.h"  // AttentionDims, GlrDims

namespace rt::cuda {

// elementwise.cu
void fill(float* x, int64_t n, float value);
void add(float* out, const float* a, const float* b, int64_t n);
void accumulate(float* dst, const float* src, int64_t n);
void scale(float* x, int64_t n, float factor);
double sum_squares(const float* x, int64_t n);
bool all_finite(const float* x, int64_t n);

// gemm.cu (cuBLASLt): row-major C[M,N] = alpha op(A) op(B) + beta C with leading dimensions.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);

// embedding.cu
void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t T,
                       int64_t C);
void embedding_backward(float* dtable, const int32_t* tokens, const float* dout, int64_t T,
                        int64_t C);

// norm.cu
// Each row of C channels is normalised in `groups` groups of C / groups channels.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T,
                     int64_t C, int64_t groups, float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t T, int64_t C,
                      int64_t groups);

// activation.cu
void silu_forward(float* out, const float* inp, int64_t n);
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void swiglu_forward(float* out, const float* gate_up, int64_t T, int64_t F);
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t T,
                     int64_t F);
void silu_gate_forward(float* out, const float* a, const float* gate, int64_t n);
void silu_gate_backward(float* da, float* dgate, const float* dout, const float* a,
                        const float* gate, int64_t n);
void logsigmoid_forward(float* out, const float* x, const float* bias, float scale, int64_t T,
                        int64_t C);
void logsigmoid_backward(float* dx, float* dbias, const float* dout, const float* x,
                         const float* bias, float scale, int64_t T, int64_t C);

// ssm.cu: the causal depthwise convolution and Mamba-2's element-wise pieces
void conv1d_causal_forward(float* out, const float* x, const float* weight, const float* bias,
                           const float* halo, int64_t T, int64_t C, int64_t W);
void conv1d_causal_backward(float* dx, float* dweight, float* dbias, float* dhalo,
                            const float* dout, const float* x, const float* weight,
                            const float* halo, int64_t T, int64_t C, int64_t W);
void mamba_dt_forward(float* dt, float* g, const float* dt_raw, const float* dt_bias,
                      const float* a_log, int64_t T, int64_t H);
void mamba_dt_backward(float* ddt_raw, float* ddt_bias, float* da_log, const float* ddt,
                       const float* dg, const float* dt_raw, const float* dt_bias,
                       const float* a_log, int64_t T, int64_t H);
void scale_heads_forward(float* out, const float* x, const float* s, int64_t T, int64_t H,
                         int64_t P);
void scale_heads_backward(float* dx, float* ds, const float* dout, const float* x,
                          const float* s, int64_t T, int64_t H, int64_t P);
void skip_heads_forward(float* y, const float* o, const float* x, const float* d, int64_t T,
                        int64_t H, int64_t P);
void skip_heads_backward(float* dx, float* dd, const float* dy, const float* x, const float* d,
                         int64_t T, int64_t H, int64_t P);

// rope.cu
void rope_table(float* table, const int32_t* positions, int64_t T, int64_t D, float theta);
void rope_rotate(float* x, const float* table, int64_t T, int64_t heads, int64_t D,
                 bool inverse);

// attention.cu
using cpu::AttentionDims;
void attention_block_forward(float* out, float* lse, const float* q, const float* k,
                             const float* v, const AttentionDims& d, int64_t q_pos0,
                             int64_t k_pos0, bool causal);
void attention_merge(float* out, float* lse, const float* out_blk, const float* lse_blk,
                     int64_t T, int64_t H, int64_t D);
void attention_backward_delta(float* delta, const float* dout, const float* out, int64_t T,
                              int64_t H, int64_t D);
void attention_block_backward(float* dq, float* dk, float* dv, const float* q, const float* k,
                              const float* v, const float* dout, const float* lse,
                              const float* delta, const AttentionDims& d, int64_t q_pos0,
                              int64_t k_pos0, bool causal);

// glr.cu
using cpu::GlrDims;
void glr_forward(float* o, float* h_final, float* states, const float* q, const float* k,
                 const float* v, const float* g, const float* h0, const GlrDims& d);
void glr_backward(float* dq, float* dk, float* dv, float* dg, float* dh0, const float* q,
                  const float* k, const float* v, const float* g, const float* states,
                  const float* dout, const float* dh_final, const GlrDims& d);
void glr_chunk_summary(float* s_loc, float* gamma, const float* k, const float* v, const float* g,
                       const GlrDims& d);
void glr_state_gradient(float* ds, const float* q, const float* g, const float* dout,
                        const GlrDims& d);
void glr_state_scan(float* out, const float* s_loc, const float* gamma, int64_t n, int64_t H,
                    int64_t dk, int64_t dv, bool vector_decay, bool reverse);

// lm_head.cu
double lm_head_loss(const float* h, const float* weight, const int32_t* targets, float* dh,
                    float* dweight, float grad_scale, float* token_losses, int64_t T,
                    int64_t C, int64_t V);

void lm_head_argmax(int32_t* out, const float* h, const float* weight, int64_t T, int64_t C,
                    int64_t V);

// adamw.cu
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  bool decay);

}  // namespace rt::cuda
