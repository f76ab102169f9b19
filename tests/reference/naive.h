// Naive references: plain loops in double precision, written from the math and nothing else.
// They are checked against finite differences (test_naive_fd.cpp), then the fast kernels are
// checked against them. Shapes follow kernels/ops.h; every buffer is a flat row-major vector.
#pragma once

#include <cstdint>
#include <vector>

namespace rt::ref {

using Vec = std::vector<double>;

// y[T,OC] = x[T,C] w[OC,C]^T
Vec linear(const Vec& x, const Vec& w, int T, int C, int OC);
void linear_backward(const Vec& dy, const Vec& x, const Vec& w, int T, int C, int OC, Vec& dx,
                     Vec& dw);

Vec embedding(const std::vector<int32_t>& tokens, const Vec& table, int C);
Vec embedding_backward(const std::vector<int32_t>& tokens, const Vec& dy, int V, int C);

// Over `groups` groups of C / groups channels per row (weight [C]).
Vec rmsnorm(const Vec& x, const Vec& w, int T, int C, double eps, int groups = 1);
void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& w, int T, int C, double eps, Vec& dx,
                      Vec& dw, int groups = 1);

Vec silu(const Vec& x);
Vec silu_backward(const Vec& dy, const Vec& x);
Vec swiglu(const Vec& gate_up, int T, int F);
Vec swiglu_backward(const Vec& dy, const Vec& gate_up, int T, int F);

// out = a * silu(gate); scale * logsigmoid(x + bias[c]) over [T, C]
Vec silu_gate(const Vec& a, const Vec& gate);
void silu_gate_backward(const Vec& dy, const Vec& a, const Vec& gate, Vec& da, Vec& dgate);
Vec logsigmoid(const Vec& x, const Vec& bias, int T, int C, double scale);
void logsigmoid_backward(const Vec& dy, const Vec& x, const Vec& bias, int T, int C, double scale,
                         Vec& dx, Vec& dbias);

// Causal depthwise conv, x [T, C], weight [C, W], bias [C], halo [W-1, C] (empty: zeros).
Vec conv1d_causal(const Vec& x, const Vec& w, const Vec& bias, const Vec& halo, int T, int C,
                  int W);
void conv1d_causal_backward(const Vec& dy, const Vec& x, const Vec& w, const Vec& halo, int T,
                            int C, int W, Vec& dx, Vec& dw, Vec& dbias, Vec& dhalo);

// Mamba-2: dt = softplus(dt_raw + dt_bias), g = -exp(A_log) dt, both [T, H].
void mamba_dt(const Vec& dt_raw, const Vec& dt_bias, const Vec& a_log, int T, int H, Vec& dt,
              Vec& g);
void mamba_dt_backward(const Vec& ddt, const Vec& dg, const Vec& dt_raw, const Vec& dt_bias,
                       const Vec& a_log, int T, int H, Vec& ddt_raw, Vec& ddt_bias, Vec& da_log);

// x [T, heads, D] at positions -> rotated copy; backward rotates the gradient back.
Vec rope(const Vec& x, const std::vector<int32_t>& positions, int T, int heads, int D,
         double theta);
Vec rope_backward(const Vec& dy, const std::vector<int32_t>& positions, int T, int heads, int D,
                  double theta);

// Full softmax attention with the mask of kernels/ops.h (positions q_pos0 + i, k_pos0 + j).
struct AttentionShape {
  int Tq, Tk, H, Hkv, D;
  int64_t q_pos0 = 0, k_pos0 = 0;
  bool causal = true;
};
void attention(const Vec& q, const Vec& k, const Vec& v, const AttentionShape& s, Vec& out,
               Vec& lse);
void attention_backward(const Vec& dout, const Vec& q, const Vec& k, const Vec& v,
                        const AttentionShape& s, Vec& dq, Vec& dk, Vec& dv);

// Sum over tokens with target >= 0 of -log softmax(h W^T)[target]; grads of that sum.
double lm_head_loss(const Vec& h, const Vec& w, const std::vector<int32_t>& targets, int T, int C,
                    int V);
void lm_head_loss_backward(const Vec& h, const Vec& w, const std::vector<int32_t>& targets, int T,
                           int C, int V, Vec& dh, Vec& dw);

// Gated linear recurrence, token by token (docs/DESIGN.md §5), per head h (query/key group hg):
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = scale * S_t^T q_t,  S_{-1} = h0
// q, k [T, Hg, dk]; v, o [T, H, dv]; g [T, H, dk] (vector decay) or [T, H] (scalar decay,
// vector_decay = false); h0, h_final [H, dk, dv].
struct GlrShape {
  int T, H, Hg, dk, dv;
  bool vector_decay = true;
  double scale = 1.0;
};
void glr(const Vec& q, const Vec& k, const Vec& v, const Vec& g, const Vec& h0, const GlrShape& s,
         Vec& o, Vec& h_final);
// Gradients of sum(o * dout) + sum(h_final * dh_final).
void glr_backward(const Vec& q, const Vec& k, const Vec& v, const Vec& g, const Vec& h0,
                  const Vec& dout, const Vec& dh_final, const GlrShape& s, Vec& dq, Vec& dk,
                  Vec& dv, Vec& dg, Vec& dh0);

}  // namespace rt::ref
