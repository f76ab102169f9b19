// The model's shape, as the recipe's `model:` section gives it (torchtitan's ModelArgs).
// Derived values (head_dim, mlp_hidden, kv_heads when 0) are filled by resolve().
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/enum_names.h"
#include "kernels/rope_frequencies.h"

namespace rt {

// model.rope_scaling: Hugging Face's rope_type names.
template <>
struct EnumNames<RopeKind> {
  static constexpr std::string_view noun = "RoPE scaling";
  static constexpr std::array<std::string_view, 5> names = {"default", "linear", "dynamic", "yarn",
                                                            "llama3"};
};

// model.mlp_activation: the '-' layer's form.
enum class MlpActivation : int32_t { SwiGlu, Relu2 };
template <>
struct EnumNames<MlpActivation> {
  static constexpr std::string_view noun = "MLP activation";
  static constexpr std::array<std::string_view, 2> names = {"swiglu", "relu2"};
};

struct ModelConfig {
  // One symbol per residual layer (Megatron's hybrid convention, plus G):
  //   '*' softmax attention, '-' MLP, 'G' Gated Linear Attention, 'M' Mamba-2.
  std::string pattern = "*-*-";
  int64_t vocab_size = 258;  // byte tokenizer: 256 bytes + <eos> + <pad>
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t kv_heads = 0;    // 0: same as heads (no GQA)
  int64_t head_dim = 0;    // 0: d_model / heads
  int64_t mlp_hidden = 0;  // 0: 8/3 d_model rounded up to a multiple of 64 (Llama)
  // swiglu: silu(x W_gate^T) * (x W_up^T) (Llama); relu2: max(x W_up^T, 0)^2 (NemotronH).
  MlpActivation mlp_activation = MlpActivation::SwiGlu;
  // RoPE on attention's q and k; false: attention without positions (NemotronH, whose
  // Mamba-2 layers carry the order).
  bool rope = true;
  double rope_theta = 10000.0;
  // RoPE scaling for a context longer than the original L0 (kernels/rope_frequencies.h).
  RopeKind rope_scaling = RopeKind::Default;
  double rope_factor = 1.0;            // linear, dynamic, yarn, llama3
  int64_t rope_original_context = 0;   // L0: dynamic, yarn, llama3
  double rope_low_freq_factor = 1.0;   // llama3
  double rope_high_freq_factor = 4.0;  // llama3
  double rope_beta_fast = 32.0;        // yarn
  double rope_beta_slow = 1.0;         // yarn
  double rope_attention_factor = 0.0;  // yarn; 0 = 0.1 ln(factor) + 1
  double norm_eps = 1e-5;
  bool tied_embeddings = true;
  bool attention_bias = false;  // biases on the q, k, v projections (Qwen2)
  double init_std = 0.02;

  // GLA ('G'): heads of dk = d_model * expand_k / heads keys and dv = d_model * expand_v /
  // heads values, low-rank gate (rank 16, normaliser 16), per-head RMSNorm, swish output gate.
  int64_t gla_heads = 0;  // 0: heads
  double gla_expand_k = 0.5;
  double gla_expand_v = 1.0;
  // Mamba-2 ('M'): d_inner = expand * d_model (or num_heads x headdim) in heads of headdim, B and C
  // of d_state shared by ngroups groups of heads, causal conv of conv_width.
  int64_t mamba_d_state = 64;
  int64_t mamba_headdim = 64;
  int64_t mamba_expand = 2;
  // 0: mamba_expand * d_model / mamba_headdim heads. Set, d_inner is heads x headdim (HF's
  // num_heads: NemotronH's is not always a multiple of d_model).
  int64_t mamba_num_heads = 0;
  int64_t mamba_ngroups = 1;
  int64_t mamba_conv_width = 4;
  // Tokens per chunk of the chunked recurrence of both (16..256).
  int64_t glr_chunk = 64;

  // Fills the derived values; call after every explicit value is set.
  void resolve() {
    if (kv_heads == 0) kv_heads = heads;
    if (head_dim == 0 && heads > 0) head_dim = d_model / heads;
    if (mlp_hidden == 0) mlp_hidden = (8 * d_model / 3 + 63) / 64 * 64;
    if (gla_heads == 0) gla_heads = heads;
  }
  // The RoPE table's parameters for a sequence of seq_len tokens (dynamic scaling depends on it).
  RopeFrequencies rope_frequencies(int64_t seq_len) const {
    RopeFrequencies f;
    f.kind = rope_scaling;
    f.theta = rope_theta;
    f.factor = rope_factor;
    f.original_context = static_cast<double>(rope_original_context);
    f.low_freq_factor = rope_low_freq_factor;
    f.high_freq_factor = rope_high_freq_factor;
    f.beta_fast = rope_beta_fast;
    f.beta_slow = rope_beta_slow;
    if (rope_scaling == RopeKind::Yarn)
      f.attention_factor = rope_attention_factor > 0 ? rope_attention_factor
                           : rope_factor > 1         ? 0.1 * std::log(rope_factor) + 1.0
                                                     : 1.0;
    f.seq_len = static_cast<double>(seq_len);
    return f;
  }
  int64_t gla_key_dim() const { return static_cast<int64_t>(d_model * gla_expand_k); }
  int64_t gla_value_dim() const { return static_cast<int64_t>(d_model * gla_expand_v); }
  int64_t mamba_d_inner() const {
    return mamba_num_heads > 0 ? mamba_num_heads * mamba_headdim : mamba_expand * d_model;
  }
  int64_t mamba_heads() const { return mamba_d_inner() / mamba_headdim; }
  // Rows before each zigzag unit that the model's causal convolution reads (Mamba-2's width - 1;
  // 0 without Mamba-2 layers): every unit must hold at least that many tokens.
  int64_t conv_halo_rows() const {
    return pattern.find('M') != std::string::npos ? mamba_conv_width - 1 : 0;
  }
};

}  // namespace rt
