#include "model/mamba2.h"

#include <cmath>

#include "kernels/ops.h"

namespace rt {

Mamba2Layer::Mamba2Layer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params)
    : C_(cfg.d_model),
      DI_(cfg.mamba_d_inner()),
      NH_(cfg.mamba_heads()),
      P_(cfg.mamba_headdim),
      N_(cfg.mamba_d_state),
      G_(cfg.mamba_ngroups),
      W_(cfg.mamba_conv_width),
      chunk_(cfg.glr_chunk),
      eps_(static_cast<float>(cfg.norm_eps)) {
  const int64_t conv_dim = DI_ + 2 * G_ * N_;
  in_proj = params.add(prefix + ".in_proj", {2 * DI_ + 2 * G_ * N_ + NH_, C_}, true);
  conv_w = params.add(prefix + ".conv_w", {conv_dim, W_}, true);
  conv_b = params.add(prefix + ".conv_b", {conv_dim}, false);
  dt_bias = params.add(prefix + ".dt_bias", {NH_}, false);
  a_log = params.add(prefix + ".A_log", {NH_}, false);
  d_skip = params.add(prefix + ".D", {NH_}, false);
  norm = params.add(prefix + ".norm", {DI_}, false);
  out_proj = params.add(prefix + ".out_proj", {C_, DI_}, true);
}

Mamba2Layer::Part Mamba2Layer::part(int i) const {
  switch (i) {
    case 0: return {0, DI_};                   // x
    case 1: return {DI_, G_ * N_};             // B
    default: return {DI_ + G_ * N_, G_ * N_};  // C
  }
}

int64_t Mamba2Layer::segments(const SequenceLayout& layout, int64_t T) const {
  return T / layout.local_len * static_cast<int64_t>(layout.segments.size());
}

void Mamba2Layer::forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  const SequenceContext& seq = ctx.seq;
  const Tensor cw = p.value(conv_w), cb = p.value(conv_b);
  z_ = arena.alloc({T, DI_});
  dt_raw_ = arena.alloc({T, NH_});
  for (int i = 0; i < 3; ++i) {
    const Part pt = part(i);
    pre_[i] = arena.alloc({T, pt.width});
    halo_[i] = arena.alloc({segments(*seq.layout, T), W_ - 1, pt.width});
    conv_[i] = arena.alloc({T, pt.width});
    act_[i] = arena.alloc({T, pt.width});
  }
  dt_ = arena.alloc({T, NH_});
  g_ = arena.alloc({T, NH_});
  v_ = arena.alloc({T, NH_, P_});
  y_ = arena.alloc({T, NH_, P_});  // first o, then y = o + D x in place (backward never reads o)
  gated_ = arena.alloc({T, DI_});
  normed_ = arena.alloc({T, DI_});
  rstd_ = G_ == 1 ? arena.alloc({T}) : arena.alloc({T, G_});

  project_in(z_, pre_, dt_raw_, x, p.matmul_weight(in_proj));
  for (int i = 0; i < 3; ++i) {
    const Part pt = part(i);
    conv_halos_forward(seq, pre_[i], halo_[i], arena);
    // Each segment of each sequence convolves with the rows before it.
    const int64_t n_segments = static_cast<int64_t>(seq.layout->segments.size());
    for (int64_t b = 0; b < seq.n_seqs; ++b)
      for (int64_t k = 0; k < n_segments; ++k) {
        const Segment& c = seq.layout->segments[k];
        const int64_t row = b * seq.layout->local_len + c.local_offset;
        ops::conv1d_causal_forward(conv_[i].rows(row, c.length), pre_[i].rows(row, c.length),
                                   cw.rows(pt.row, pt.width), cb.rows(pt.row, pt.width),
                                   halo_[i].rows(b * n_segments + k, 1).view({W_ - 1, pt.width}));
      }
    ops::silu_forward(act_[i], conv_[i]);
  }
  const Tensor xs = act_[0].view({T, NH_, P_});
  ops::mamba_dt_forward(dt_, g_, dt_raw_, p.value(dt_bias), p.value(a_log));
  ops::scale_heads_forward(v_, xs, dt_);
  glr_sequences_forward(seq, act_[2].view({T, G_, N_}), act_[1].view({T, G_, N_}), v_, g_, 1.0f,
                        chunk_, y_, glr_, arena);
  project_out(y, y_, xs, z_, gated_, normed_, rstd_, p);
}

void Mamba2Layer::project_in(const Tensor& z, const Tensor (&pre)[3], const Tensor& dt_raw,
                             const Tensor& x, const Tensor& w_in) const {
  ops::linear_forward(z, x, w_in.rows(0, DI_));
  ops::linear_forward(dt_raw, x, w_in.rows(2 * DI_ + 2 * G_ * N_, NH_));
  for (int i = 0; i < 3; ++i)
    ops::linear_forward(pre[i], x, w_in.rows(DI_ + part(i).row, part(i).width));
}

void Mamba2Layer::project_out(const Tensor& y, const Tensor& o, const Tensor& xs, const Tensor& z,
                              const Tensor& gated, const Tensor& normed, const Tensor& rstd,
                              const ParameterSet& p) const {
  const int64_t T = o.size(0);
  ops::skip_heads_forward(o, o, xs, p.value(d_skip));  // y = o + D x, in place
  ops::silu_gate_forward(gated, o.view({T, DI_}), z);
  ops::rmsnorm_forward(normed, rstd, gated, p.value(norm), eps_, G_);
  if (y.defined()) ops::linear_forward(y, normed, p.matmul_weight(out_proj));
}

namespace {
// What generation carries from token to token: each convolved part's last W - 1 inputs and
// the recurrence's state.
struct Mamba2DecodeState final : DecodeState {
  Tensor window[3];  // [W - 1, width] of x, B, C
  Tensor state;      // [NH, N, P]
};
}  // namespace

std::unique_ptr<DecodeState> Mamba2Layer::decode_state(int64_t) const {
  auto s = std::make_unique<Mamba2DecodeState>();
  for (int i = 0; i < 3; ++i) s->window[i] = Tensor::zeros({W_ - 1, part(i).width});
  s->state = Tensor::zeros({NH_, N_, P_});
  return s;
}

// The forward for the next T tokens from the carried state: the conv reads the window before
// them, the recurrence starts from the state; both move on past the T tokens.
void Mamba2Layer::decode(const Tensor& y, const Tensor& x, int64_t, DecodeState* state,
                         const LayerContext& ctx, Arena& arena) {
  auto& s = static_cast<Mamba2DecodeState&>(*state);
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  const Tensor cw = p.value(conv_w), cb = p.value(conv_b);
  Tensor z = arena.alloc({T, DI_}), dt_raw = arena.alloc({T, NH_}), dt = arena.alloc({T, NH_}),
         g = arena.alloc({T, NH_});
  Tensor window[3], pre[3], act[3];
  for (int i = 0; i < 3; ++i) {
    window[i] = arena.alloc({W_ - 1 + T, part(i).width});  // the carried rows, then the new
    copy_tensor(window[i].rows(0, W_ - 1), s.window[i]);
    pre[i] = window[i].rows(W_ - 1, T);
    act[i] = arena.alloc({T, part(i).width});
  }
  project_in(z, pre, dt_raw, x, p.matmul_weight(in_proj));
  for (int i = 0; i < 3; ++i) {
    const Part pt = part(i);
    ops::conv1d_causal_forward(act[i], pre[i], cw.rows(pt.row, pt.width), cb.rows(pt.row, pt.width),
                               window[i].rows(0, W_ - 1));
    ops::silu_forward(act[i], act[i]);
    copy_tensor(s.window[i], window[i].rows(T, W_ - 1));
  }
  const Tensor xs = act[0].view({T, NH_, P_});
  Tensor v = arena.alloc({T, NH_, P_}), o = arena.alloc({T, NH_, P_}),
         h_final = arena.alloc({NH_, N_, P_});
  ops::mamba_dt_forward(dt, g, dt_raw, p.value(dt_bias), p.value(a_log));
  ops::scale_heads_forward(v, xs, dt);
  ops::glr_forward(o, h_final, Tensor(), act[2].view({T, G_, N_}), act[1].view({T, G_, N_}), v, g,
                   s.state, 1.0f, chunk_);
  copy_tensor(s.state, h_final);
  project_out(y, o, xs, z, arena.alloc({T, DI_}), arena.alloc({T, DI_}),
              G_ == 1 ? arena.alloc({T}) : arena.alloc({T, G_}), p);
}

void Mamba2Layer::backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                           const LayerContext& ctx, Arena& arena) {
  const int64_t T = x.size(0);
  const ParameterSet& p = ctx.params;
  const SequenceContext& seq = ctx.seq;
  const Tensor w_in = p.matmul_weight(in_proj), dw_in = p.grad(in_proj);
  // dy reuses dnormed's buffer (dead once dgated exists); each part's conv gradient overwrites
  // its activation gradient in place.
  Tensor dnormed = arena.alloc({T, DI_}), dgated = arena.zeros({T, DI_});
  Tensor dyy = dnormed.view({T, NH_, P_}), dz = arena.alloc({T, DI_});
  Tensor dact[3], dpre[3], dhalo[3];
  for (int i = 0; i < 3; ++i) {
    dact[i] = arena.zeros({T, part(i).width});
    dpre[i] = arena.alloc({T, part(i).width});
    dhalo[i] = arena.alloc(halo_[i].shape());
  }
  Tensor dv = arena.alloc({T, NH_, P_}), dg = arena.alloc({T, NH_}), ddt = arena.alloc({T, NH_}),
         ddt_raw = arena.alloc({T, NH_});
  const Tensor xs = act_[0].view({T, NH_, P_}), dxs = dact[0].view({T, NH_, P_});

  ops::linear_backward(dnormed, p.grad(out_proj), dy, normed_, p.matmul_weight(out_proj), false);
  ops::rmsnorm_backward(dgated, p.grad(norm), dnormed, gated_, p.value(norm), rstd_, G_);
  ops::silu_gate_backward(dyy.view({T, DI_}), dz, dgated, y_.view({T, DI_}), z_);
  ops::skip_heads_backward(dxs, p.grad(d_skip), dyy, xs, p.value(d_skip));  // do = dy
  glr_sequences_backward(seq, act_[2].view({T, G_, N_}), act_[1].view({T, G_, N_}), v_, g_, 1.0f,
                         chunk_, dyy, glr_, dact[2].view({T, G_, N_}), dact[1].view({T, G_, N_}),
                         dv, dg, arena);
  ops::scale_heads_backward(dxs, ddt, dv, xs, dt_);
  ops::mamba_dt_backward(ddt_raw, p.grad(dt_bias), p.grad(a_log), ddt, dg, dt_raw_,
                         p.value(dt_bias), p.value(a_log));

  const Tensor cw = p.value(conv_w), dcw = p.grad(conv_w), dcb = p.grad(conv_b);
  const int64_t n_segments = static_cast<int64_t>(seq.layout->segments.size());
  for (int i = 0; i < 3; ++i) {
    const Part pt = part(i);
    const Tensor dconv = dact[i];
    ops::silu_backward(dconv, dact[i], conv_[i]);
    for (int64_t b = 0; b < seq.n_seqs; ++b)
      for (int64_t k = 0; k < n_segments; ++k) {
        const Segment& c = seq.layout->segments[k];
        const int64_t row = b * seq.layout->local_len + c.local_offset;
        const Tensor h = halo_[i].rows(b * n_segments + k, 1).view({W_ - 1, pt.width});
        ops::conv1d_causal_backward(
            dpre[i].rows(row, c.length), dcw.rows(pt.row, pt.width), dcb.rows(pt.row, pt.width),
            dhalo[i].rows(b * n_segments + k, 1).view({W_ - 1, pt.width}),
            dconv.rows(row, c.length), pre_[i].rows(row, c.length), cw.rows(pt.row, pt.width), h);
      }
    // The halo rows' gradients go back to the rows (and ranks) they came from.
    conv_halos_backward(seq, dhalo[i], dpre[i], arena);
  }
  ops::linear_backward(dx, dw_in.rows(0, DI_), dz, x, w_in.rows(0, DI_), false);
  for (int i = 0; i < 3; ++i) {
    const Part pt = part(i);
    ops::linear_backward(dx, dw_in.rows(DI_ + pt.row, pt.width), dpre[i], x,
                         w_in.rows(DI_ + pt.row, pt.width), true);
  }
  const int64_t dt_row = 2 * DI_ + 2 * G_ * N_;
  ops::linear_backward(dx, dw_in.rows(dt_row, NH_), ddt_raw, x, w_in.rows(dt_row, NH_), true);
}

int64_t Mamba2Layer::saved_floats(int64_t T, const SequenceLayout& layout) const {
  const int64_t conv_dim = DI_ + 2 * G_ * N_;
  // z | pre, conv, act of x, B, C | halos | dt_raw, dt, g | v, y | gated, normed | rstd
  return T * (DI_ + 3 * conv_dim + 3 * NH_ + 2 * DI_ + 2 * DI_ + G_) +
         segments(layout, T) * (W_ - 1) * conv_dim +
         glr_sequences_saved_floats(layout, T / layout.local_len, NH_, N_, P_, false, chunk_);
}

int64_t Mamba2Layer::forward_floats(int64_t T, const SequenceLayout& layout) const {
  const int64_t n_seqs = T / layout.local_len;
  // The halos travel per part (x, B, C), each at its own width: the widest sizes the scratch.
  return std::max(conv_halos_floats(layout, n_seqs, W_, std::max(DI_, G_ * N_)),
                  glr_sequences_forward_floats(layout, n_seqs, NH_, N_, P_, false));
}

int64_t Mamba2Layer::backward_floats(int64_t T, const SequenceLayout& layout) const {
  const int64_t conv_dim = DI_ + 2 * G_ * N_, n_seqs = T / layout.local_len;
  // dnormed (= dy), dgated, dz | dact (= dconv), dpre of x, B, C | dhalos | dv | dg, ddt, ddt_raw
  const int64_t own =
      T * (3 * DI_ + 2 * conv_dim + DI_ + 3 * NH_) + segments(layout, T) * (W_ - 1) * conv_dim;
  return own + std::max(glr_sequences_backward_floats(layout, n_seqs, NH_, N_, P_),
                        conv_halos_floats(layout, n_seqs, W_, std::max(DI_, G_ * N_)));
}

double Mamba2Layer::forward_flops_per_token(int64_t) const {
  const double conv_dim = static_cast<double>(DI_ + 2 * G_ * N_);
  const double projections = 2.0 * C_ * (2 * DI_ + 2 * G_ * N_ + NH_) + 2.0 * DI_ * C_;
  const double recurrence = NH_ * (4.0 * N_ * P_ + 2.0 * (chunk_ / 2.0) * (N_ + P_));
  return projections + 2.0 * W_ * conv_dim + recurrence;
}

void Mamba2Layer::init_parameters(const ParameterSet& params, uint64_t seed, double std,
                                  double residual_std) const {
  init_param_normal(params, in_proj, std, seed);
  init_param_normal(params, out_proj, residual_std, seed);
  // PyTorch's default for a depthwise conv: U(-1/sqrt(W), 1/sqrt(W)), weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(W_));
  init_uniform(params.value(conv_w), -bound, bound, seed, hash_name(params.all()[conv_w].name));
  init_uniform(params.value(conv_b), -bound, bound, seed, hash_name(params.all()[conv_b].name));
  // dt log-uniform in [1e-3, 0.1], dt_bias its inverse softplus; A from U(1, 16); D = 1.
  const Tensor bias = params.value(dt_bias), alog = params.value(a_log);
  init_uniform(bias, std::log(1e-3), std::log(0.1), seed, hash_name(params.all()[dt_bias].name));
  init_uniform(alog, 1.0, 16.0, seed, hash_name(params.all()[a_log].name));
  for (int64_t h = 0; h < NH_; ++h) {
    const double dt = std::max(std::exp(static_cast<double>(bias.f32()[h])), 1e-4);
    bias.f32()[h] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
    alog.f32()[h] = static_cast<float>(std::log(alog.f32()[h]));
  }
  ops::fill(params.value(d_skip), 1.0f);
  ops::fill(params.value(norm), 1.0f);
}

}  // namespace rt
