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

Vec rmsnorm(const Vec& x, const Vec& w, int T, int C, double eps);
void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& w, int T, int C, double eps,
                      Vec& dx, Vec& dw);

Vec silu(const Vec& x);
Vec silu_backward(const Vec& dy, const Vec& x);
Vec swiglu(const Vec& gate_up, int T, int F);
Vec swiglu_backward(const Vec& dy, const Vec& gate_up, int T, int F);

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

}  // namespace rt::ref
