// Mamba-2 (Dao & Gu), parameters laid out as mamba_ssm's Mamba2 (in_proj rows z | x | B | C | dt).
//   x [T, C] -> z, xr [T, DI], Br, Cr [T, G*N], dt_raw [T, NH]     (rows of in_proj)
//   xs, B, C = SiLU(causal depthwise conv1d of width W (+ bias) over xr, Br, Cr)
//              (the rows before each segment come from the previous rank: halos)
//   dt = softplus(dt_raw + dt_bias) [T, NH];  A = -exp(A_log) [NH]
//   per head h (group h / (NH/G)): h_t = exp(dt_t A) h_{t-1} + (dt_t x_t) B_t^T,  o_t = h_t^T C_t
//              (the GLR kernel with q = C, k = B, v = dt * x, g = dt * A, scale 1)
//   y = o + D * xs;  out [T, C] = RMSNorm_group(y * silu(z)) W_out^T
// DI = expand * C in NH heads of P = headdim; N = d_state; G = ngroups.
// Parameters: in_proj [2DI + 2GN + NH, C], conv_w [DI + 2GN, W], conv_b [DI + 2GN], dt_bias,
// A_log, D [NH], norm [DI], out_proj [C, DI]. No weight decay on conv_b, dt_bias, A_log, D, norm.
#pragma once

#include "model/layer.h"
#include "parallel/state_passing.h"

namespace rt {

class Mamba2Layer final : public Layer {
 public:
  Mamba2Layer(const std::string& prefix, const ModelConfig& cfg, ParameterSet& params);
  void forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) override;
  void backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const LayerContext& ctx,
                Arena& arena) override;
  // The conv's last inputs and the recurrent state (docs/DESIGN.md §9).
  bool decodes() const override { return true; }
  std::unique_ptr<DecodeState> decode_state(int64_t max_len) const override;
  void decode(const Tensor& y, const Tensor& x, int64_t pos, DecodeState* state,
              const LayerContext& ctx, Arena& arena) override;
  int64_t saved_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t forward_floats(int64_t T, const SequenceLayout& layout) const override;
  int64_t backward_floats(int64_t T, const SequenceLayout& layout) const override;
  double forward_flops_per_token(int64_t seq_len) const override;
  void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                       double residual_std) const override;

  int in_proj, conv_w, conv_b, dt_bias, a_log, d_skip, norm, out_proj;  // parameter ids

 private:
  // The three convolved parts: x, B, C.
  struct Part {
    int64_t row, width;  // first row in conv_w/conv_b (and in_proj after z), channels
  };
  Part part(int i) const;
  int64_t segments(const SequenceLayout& layout, int64_t T) const;
  // z, the conv inputs of x, B, C and dt_raw [T, *] from x [T, C]: the rows of in_proj.
  void project_in(const Tensor& z, const Tensor (&pre)[3], const Tensor& dt_raw, const Tensor& x,
                  const Tensor& w_in) const;
  // From the recurrence's o [T, NH, P] (made y = o + D xs in place): the gated group norm and
  // out_proj into y [T, C] (skipped when undefined).
  void project_out(const Tensor& y, const Tensor& o, const Tensor& xs, const Tensor& z,
                   const Tensor& gated, const Tensor& normed, const Tensor& rstd,
                   const ParameterSet& p) const;

  int64_t C_, DI_, NH_, P_, N_, G_, W_, chunk_;
  float eps_;
  // Saved by forward.
  Tensor z_, pre_[3], halo_[3], conv_[3], act_[3], dt_raw_, dt_, g_, v_, y_, gated_, normed_, rstd_;
  GlrSaved glr_;
};

}  // namespace rt
