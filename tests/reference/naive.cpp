#include "tests/reference/naive.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace rt::ref {

Vec linear(const Vec& x, const Vec& w, int T, int C, int OC) {
  Vec y(static_cast<size_t>(T) * OC, 0.0);
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < OC; ++o) {
      double s = 0;
      for (int c = 0; c < C; ++c) s += x[t * C + c] * w[o * C + c];
      y[t * OC + o] = s;
    }
  return y;
}

void linear_backward(const Vec& dy, const Vec& x, const Vec& w, int T, int C, int OC, Vec& dx,
                     Vec& dw) {
  dx.assign(static_cast<size_t>(T) * C, 0.0);
  dw.assign(static_cast<size_t>(OC) * C, 0.0);
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < OC; ++o)
      for (int c = 0; c < C; ++c) {
        dx[t * C + c] += dy[t * OC + o] * w[o * C + c];
        dw[o * C + c] += dy[t * OC + o] * x[t * C + c];
      }
}

Vec embedding(const std::vector<int32_t>& tokens, const Vec& table, int C) {
  Vec y(tokens.size() * C);
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int c = 0; c < C; ++c) y[t * C + c] = table[tokens[t] * C + c];
  return y;
}

Vec embedding_backward(const std::vector<int32_t>& tokens, const Vec& dy, int V, int C) {
  Vec dt(static_cast<size_t>(V) * C, 0.0);
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int c = 0; c < C; ++c) dt[tokens[t] * C + c] += dy[t * C + c];
  return dt;
}

Vec rmsnorm(const Vec& x, const Vec& w, int T, int C, double eps, int groups) {
  Vec y(x.size());
  const int G = C / groups;
  for (int t = 0; t < T; ++t)
    for (int g0 = 0; g0 < C; g0 += G) {
      double ms = 0;
      for (int c = g0; c < g0 + G; ++c) ms += x[t * C + c] * x[t * C + c];
      double r = 1.0 / std::sqrt(ms / G + eps);
      for (int c = g0; c < g0 + G; ++c) y[t * C + c] = x[t * C + c] * r * w[c];
    }
  return y;
}

void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& w, int T, int C, double eps, Vec& dx,
                      Vec& dw, int groups) {
  dx.assign(x.size(), 0.0);
  dw.assign(C, 0.0);
  const int G = C / groups;
  for (int t = 0; t < T; ++t)
    for (int g0 = 0; g0 < C; g0 += G) {
      double ms = 0;
      for (int c = g0; c < g0 + G; ++c) ms += x[t * C + c] * x[t * C + c];
      double r = 1.0 / std::sqrt(ms / G + eps);
      // y_c = x_c r w_c, dr/dx_j = -r^3 x_j / G
      double dot = 0;
      for (int c = g0; c < g0 + G; ++c) dot += dy[t * C + c] * w[c] * x[t * C + c];
      for (int j = g0; j < g0 + G; ++j) {
        dx[t * C + j] = dy[t * C + j] * w[j] * r - dot * r * r * r * x[t * C + j] / G;
        dw[j] += dy[t * C + j] * x[t * C + j] * r;
      }
    }
}

namespace {
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

Vec silu(const Vec& x) {
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * sigmoid(x[i]);
  return y;
}

Vec silu_backward(const Vec& dy, const Vec& x) {
  Vec dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double s = sigmoid(x[i]);
    dx[i] = dy[i] * (s + x[i] * s * (1 - s));
  }
  return dx;
}

Vec swiglu(const Vec& gu, int T, int F) {
  Vec y(static_cast<size_t>(T) * F);
  for (int t = 0; t < T; ++t)
    for (int f = 0; f < F; ++f) {
      double g = gu[t * 2 * F + f], u = gu[t * 2 * F + F + f];
      y[t * F + f] = g * sigmoid(g) * u;
    }
  return y;
}

Vec swiglu_backward(const Vec& dy, const Vec& gu, int T, int F) {
  Vec d(gu.size());
  for (int t = 0; t < T; ++t)
    for (int f = 0; f < F; ++f) {
      double g = gu[t * 2 * F + f], u = gu[t * 2 * F + F + f], s = sigmoid(g);
      d[t * 2 * F + f] = dy[t * F + f] * u * (s + g * s * (1 - s));
      d[t * 2 * F + F + f] = dy[t * F + f] * g * s;
    }
  return d;
}

Vec silu_gate(const Vec& a, const Vec& gate) {
  Vec y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = a[i] * gate[i] * sigmoid(gate[i]);
  return y;
}

void silu_gate_backward(const Vec& dy, const Vec& a, const Vec& gate, Vec& da, Vec& dgate) {
  da.resize(a.size());
  dgate.resize(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double s = sigmoid(gate[i]);
    da[i] = dy[i] * gate[i] * s;
    dgate[i] = dy[i] * a[i] * (s + gate[i] * s * (1 - s));
  }
}

Vec logsigmoid(const Vec& x, const Vec& bias, int T, int C, double scale) {
  Vec y(x.size());
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) y[t * C + c] = scale * std::log(sigmoid(x[t * C + c] + bias[c]));
  return y;
}

void logsigmoid_backward(const Vec& dy, const Vec& x, const Vec& bias, int T, int C, double scale,
                         Vec& dx, Vec& dbias) {
  dx.assign(x.size(), 0.0);
  dbias.assign(C, 0.0);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      dx[t * C + c] = dy[t * C + c] * scale * (1 - sigmoid(x[t * C + c] + bias[c]));
      dbias[c] += dx[t * C + c];
    }
}

namespace {
double conv_in(const Vec& x, const Vec& halo, int p, int c, int C, int W) {
  if (p >= 0) return x[p * C + c];
  return halo.empty() ? 0.0 : halo[(W - 1 + p) * C + c];
}
}  // namespace

Vec conv1d_causal(const Vec& x, const Vec& w, const Vec& bias, const Vec& halo, int T, int C,
                  int W) {
  Vec y(size_t(T) * C);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      double acc = bias.empty() ? 0.0 : bias[c];
      for (int i = 0; i < W; ++i) acc += w[c * W + i] * conv_in(x, halo, t + i - (W - 1), c, C, W);
      y[t * C + c] = acc;
    }
  return y;
}

void conv1d_causal_backward(const Vec& dy, const Vec& x, const Vec& w, const Vec& halo, int T,
                            int C, int W, Vec& dx, Vec& dw, Vec& dbias, Vec& dhalo) {
  dx.assign(x.size(), 0.0);
  dw.assign(w.size(), 0.0);
  dbias.assign(C, 0.0);
  dhalo.assign(size_t(W - 1) * C, 0.0);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      dbias[c] += dy[t * C + c];
      for (int i = 0; i < W; ++i) {
        const int p = t + i - (W - 1);
        dw[c * W + i] += dy[t * C + c] * conv_in(x, halo, p, c, C, W);
        if (p >= 0)
          dx[p * C + c] += dy[t * C + c] * w[c * W + i];
        else
          dhalo[(W - 1 + p) * C + c] += dy[t * C + c] * w[c * W + i];
      }
    }
}

void mamba_dt(const Vec& dt_raw, const Vec& dt_bias, const Vec& a_log, int T, int H, Vec& dt,
              Vec& g) {
  dt.resize(dt_raw.size());
  g.resize(dt_raw.size());
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      dt[t * H + h] = std::log1p(std::exp(dt_raw[t * H + h] + dt_bias[h]));
      g[t * H + h] = -std::exp(a_log[h]) * dt[t * H + h];
    }
}

void mamba_dt_backward(const Vec& ddt, const Vec& dg, const Vec& dt_raw, const Vec& dt_bias,
                       const Vec& a_log, int T, int H, Vec& ddt_raw, Vec& ddt_bias, Vec& da_log) {
  ddt_raw.assign(dt_raw.size(), 0.0);
  ddt_bias.assign(H, 0.0);
  da_log.assign(H, 0.0);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const double z = dt_raw[t * H + h] + dt_bias[h], a = -std::exp(a_log[h]);
      const double dt = std::log1p(std::exp(z));
      const double total = ddt[t * H + h] + dg[t * H + h] * a;
      ddt_raw[t * H + h] = total * sigmoid(z);
      ddt_bias[h] += ddt_raw[t * H + h];
      da_log[h] += dg[t * H + h] * a * dt;
    }
}

namespace {
Vec rotate(const Vec& x, const std::vector<int32_t>& pos, int T, int heads, int D, double theta,
           double sign) {
  Vec y(x.size());
  int half = D / 2;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        double a = pos[t] * std::pow(theta, -2.0 * i / D);
        double c = std::cos(a), s = sign * std::sin(a);
        size_t base = (static_cast<size_t>(t) * heads + h) * D;
        double x1 = x[base + i], x2 = x[base + i + half];
        y[base + i] = x1 * c - x2 * s;
        y[base + i + half] = x2 * c + x1 * s;
      }
  return y;
}
}  // namespace

Vec rope(const Vec& x, const std::vector<int32_t>& pos, int T, int heads, int D, double theta) {
  return rotate(x, pos, T, heads, D, theta, 1.0);
}

Vec rope_backward(const Vec& dy, const std::vector<int32_t>& pos, int T, int heads, int D,
                  double theta) {
  return rotate(dy, pos, T, heads, D, theta, -1.0);  // the rotation is orthogonal
}

namespace {
bool visible(const AttentionShape& s, int i, int j) {
  return !s.causal || s.k_pos0 + j <= s.q_pos0 + i;
}
size_t qi(const AttentionShape& s, int t, int h, int d) {
  return (static_cast<size_t>(t) * s.H + h) * s.D + d;
}
size_t ki(const AttentionShape& s, int t, int h, int d) {
  return (static_cast<size_t>(t) * s.Hkv + h) * s.D + d;
}
// Softmax probabilities of one (query, head) row; returns its log-sum-exp.
double probs(const Vec& q, const Vec& k, const AttentionShape& s, int i, int h, Vec& p) {
  const int hk = h / (s.H / s.Hkv);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  p.assign(s.Tk, 0.0);
  double mx = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < s.Tk; ++j) {
    if (!visible(s, i, j)) continue;
    double dot = 0;
    for (int d = 0; d < s.D; ++d) dot += q[qi(s, i, h, d)] * k[ki(s, j, hk, d)];
    p[j] = dot * scale;
    mx = std::max(mx, p[j]);
  }
  if (mx == -std::numeric_limits<double>::infinity()) return mx;
  double sum = 0;
  for (int j = 0; j < s.Tk; ++j)
    if (visible(s, i, j)) sum += std::exp(p[j] - mx);
  double lse = mx + std::log(sum);
  for (int j = 0; j < s.Tk; ++j) p[j] = visible(s, i, j) ? std::exp(p[j] - lse) : 0.0;
  return lse;
}
}  // namespace

void attention(const Vec& q, const Vec& k, const Vec& v, const AttentionShape& s, Vec& out,
               Vec& lse) {
  out.assign(static_cast<size_t>(s.Tq) * s.H * s.D, 0.0);
  lse.assign(static_cast<size_t>(s.Tq) * s.H, 0.0);
  Vec p;
  for (int i = 0; i < s.Tq; ++i)
    for (int h = 0; h < s.H; ++h) {
      const int hk = h / (s.H / s.Hkv);
      lse[i * s.H + h] = probs(q, k, s, i, h, p);
      for (int j = 0; j < s.Tk; ++j)
        for (int d = 0; d < s.D; ++d) out[qi(s, i, h, d)] += p[j] * v[ki(s, j, hk, d)];
    }
}

void attention_backward(const Vec& dout, const Vec& q, const Vec& k, const Vec& v,
                        const AttentionShape& s, Vec& dq, Vec& dk, Vec& dv) {
  dq.assign(q.size(), 0.0);
  dk.assign(k.size(), 0.0);
  dv.assign(v.size(), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  Vec p, dp(s.Tk);
  for (int i = 0; i < s.Tq; ++i)
    for (int h = 0; h < s.H; ++h) {
      const int hk = h / (s.H / s.Hkv);
      probs(q, k, s, i, h, p);
      // out_i = sum_j p_j v_j ; dp_j = dout_i . v_j ; dscore_j = p_j (dp_j - sum_l p_l dp_l)
      double pdp = 0;
      for (int j = 0; j < s.Tk; ++j) {
        dp[j] = 0;
        for (int d = 0; d < s.D; ++d) dp[j] += dout[qi(s, i, h, d)] * v[ki(s, j, hk, d)];
        pdp += p[j] * dp[j];
      }
      for (int j = 0; j < s.Tk; ++j) {
        const double ds = p[j] * (dp[j] - pdp) * scale;
        for (int d = 0; d < s.D; ++d) {
          dv[ki(s, j, hk, d)] += p[j] * dout[qi(s, i, h, d)];
          dq[qi(s, i, h, d)] += ds * k[ki(s, j, hk, d)];
          dk[ki(s, j, hk, d)] += ds * q[qi(s, i, h, d)];
        }
      }
    }
}

double lm_head_loss(const Vec& h, const Vec& w, const std::vector<int32_t>& targets, int T, int C,
                    int V) {
  Vec logits = linear(h, w, T, C, V);
  double total = 0;
  for (int t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    double mx = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < V; ++c) mx = std::max(mx, logits[t * V + c]);
    double sum = 0;
    for (int c = 0; c < V; ++c) sum += std::exp(logits[t * V + c] - mx);
    total += mx + std::log(sum) - logits[t * V + targets[t]];
  }
  return total;
}

void lm_head_loss_backward(const Vec& h, const Vec& w, const std::vector<int32_t>& targets, int T,
                           int C, int V, Vec& dh, Vec& dw) {
  Vec logits = linear(h, w, T, C, V);
  Vec dlogits(logits.size(), 0.0);
  for (int t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    double mx = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < V; ++c) mx = std::max(mx, logits[t * V + c]);
    double sum = 0;
    for (int c = 0; c < V; ++c) sum += std::exp(logits[t * V + c] - mx);
    for (int c = 0; c < V; ++c) dlogits[t * V + c] = std::exp(logits[t * V + c] - mx) / sum;
    dlogits[t * V + targets[t]] -= 1.0;
  }
  linear_backward(dlogits, h, w, T, C, V, dh, dw);
}

namespace {
struct GlrIndex {
  const GlrShape& s;
  size_t q(int t, int h, int d) const { return (size_t(t) * s.Hg + h / (s.H / s.Hg)) * s.dk + d; }
  size_t v(int t, int h, int j) const { return (size_t(t) * s.H + h) * s.dv + j; }
  size_t g(int t, int h, int d) const {
    return s.vector_decay ? (size_t(t) * s.H + h) * s.dk + d : size_t(t) * s.H + h;
  }
  size_t state(int h, int d, int j) const { return (size_t(h) * s.dk + d) * s.dv + j; }
};

// One step S <- exp(g_t) S + k_t v_t^T for every head.
void glr_step(const Vec& k, const Vec& v, const Vec& g, const GlrShape& s, int t, Vec& state) {
  const GlrIndex ix{s};
  for (int h = 0; h < s.H; ++h)
    for (int d = 0; d < s.dk; ++d) {
      const double a = std::exp(g[ix.g(t, h, d)]);
      for (int j = 0; j < s.dv; ++j)
        state[ix.state(h, d, j)] =
            a * state[ix.state(h, d, j)] + k[ix.q(t, h, d)] * v[ix.v(t, h, j)];
    }
}

// Every kStride-th state is kept (states[b] = S_{b * kStride - 1}, states[0] = h0) and the
// backward recomputes the states of one stretch at a time, so that memory stays at
// T / kStride + kStride states: the reference runs at 128K tokens and more.
constexpr int kStride = 256;
}  // namespace

void glr(const Vec& q, const Vec& k, const Vec& v, const Vec& g, const Vec& h0, const GlrShape& s,
         Vec& o, Vec& h_final) {
  const GlrIndex ix{s};
  Vec state = h0;
  o.assign(size_t(s.T) * s.H * s.dv, 0.0);
  for (int t = 0; t < s.T; ++t) {
    glr_step(k, v, g, s, t, state);
    for (int h = 0; h < s.H; ++h)
      for (int j = 0; j < s.dv; ++j) {
        double acc = 0;
        for (int d = 0; d < s.dk; ++d) acc += state[ix.state(h, d, j)] * q[ix.q(t, h, d)];
        o[ix.v(t, h, j)] = s.scale * acc;
      }
  }
  h_final = state;
}

void glr_backward(const Vec& q, const Vec& k, const Vec& v, const Vec& g, const Vec& h0,
                  const Vec& dout, const Vec& dh_final, const GlrShape& s, Vec& dq, Vec& dk,
                  Vec& dv, Vec& dg, Vec& dh0) {
  const GlrIndex ix{s};
  std::vector<Vec> saved{h0};
  Vec state = h0;
  for (int t = 0; t < s.T; ++t) {
    glr_step(k, v, g, s, t, state);
    if ((t + 1) % kStride == 0) saved.push_back(state);
  }
  dq.assign(q.size(), 0.0);
  dk.assign(k.size(), 0.0);
  dv.assign(v.size(), 0.0);
  dg.assign(g.size(), 0.0);
  Vec ds = dh_final;         // gradient with respect to S_t, walking t backwards
  std::vector<Vec> stretch;  // stretch[i] = S_{t0 + i - 1}
  for (int t0 = (s.T - 1) / kStride * kStride; t0 >= 0; t0 -= kStride) {
    const int t1 = std::min(s.T, t0 + kStride);
    stretch.assign(1, saved[t0 / kStride]);
    for (int t = t0; t < t1; ++t) {
      stretch.push_back(stretch.back());
      glr_step(k, v, g, s, t, stretch.back());
    }
    for (int t = t1 - 1; t >= t0; --t) {
      const Vec& st = stretch[t - t0 + 1];
      const Vec& prev = stretch[t - t0];
      for (int h = 0; h < s.H; ++h) {
        // o_t = scale S_t^T q_t
        for (int d = 0; d < s.dk; ++d)
          for (int j = 0; j < s.dv; ++j) {
            ds[ix.state(h, d, j)] += s.scale * q[ix.q(t, h, d)] * dout[ix.v(t, h, j)];
            dq[ix.q(t, h, d)] += s.scale * st[ix.state(h, d, j)] * dout[ix.v(t, h, j)];
          }
        // S_t = exp(g_t) S_{t-1} + k_t v_t^T
        for (int d = 0; d < s.dk; ++d) {
          const double a = std::exp(g[ix.g(t, h, d)]);
          for (int j = 0; j < s.dv; ++j) {
            const double gs = ds[ix.state(h, d, j)];
            dk[ix.q(t, h, d)] += gs * v[ix.v(t, h, j)];
            dv[ix.v(t, h, j)] += gs * k[ix.q(t, h, d)];
            dg[ix.g(t, h, d)] += gs * a * prev[ix.state(h, d, j)];
            ds[ix.state(h, d, j)] = a * gs;
          }
        }
      }
    }
  }
  dh0 = ds;
}

}  // namespace rt::ref
