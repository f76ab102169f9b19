// The model's shape, as the recipe's `model:` section gives it (torchtitan's ModelArgs).
// Derived values (head_dim, mlp_hidden, kv_heads when 0) are filled by resolve().
#pragma once

#include <cstdint>
#include <string>

namespace rt {

struct ModelConfig {
  // One symbol per residual layer (Megatron's hybrid convention, plus G):
  //   '*' softmax attention, '-' SwiGLU MLP, 'G' Gated Linear Attention, 'M' Mamba-2.
  std::string pattern = "*-*-";
  int64_t vocab_size = 258;  // byte tokenizer: 256 bytes + <eos> + <pad>
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t kv_heads = 0;    // 0: same as heads (no GQA)
  int64_t head_dim = 0;    // 0: d_model / heads
  int64_t mlp_hidden = 0;  // 0: 8/3 d_model rounded up to a multiple of 64 (Llama)
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tied_embeddings = true;
  bool attention_bias = false;  // biases on the q, k, v projections (Qwen2)
  double init_std = 0.02;

  // GLA ('G'): heads of dk = d_model * expand_k / heads keys and dv = d_model * expand_v /
  // heads values, low-rank gate (rank 16, normaliser 16), per-head RMSNorm, swish output gate.
  int64_t gla_heads = 0;  // 0: heads
  double gla_expand_k = 0.5;
  double gla_expand_v = 1.0;
  // Mamba-2 ('M'): d_inner = expand * d_model in heads of headdim, B and C of d_state shared
  // by ngroups groups of heads, causal conv of conv_width.
  int64_t mamba_d_state = 64;
  int64_t mamba_headdim = 64;
  int64_t mamba_expand = 2;
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
  int64_t gla_key_dim() const { return static_cast<int64_t>(d_model * gla_expand_k); }
  int64_t gla_value_dim() const { return static_cast<int64_t>(d_model * gla_expand_v); }
  int64_t mamba_d_inner() const { return mamba_expand * d_model; }
  int64_t mamba_heads() const { return mamba_d_inner() / mamba_headdim; }
  // Rows before each zigzag unit that the model's causal convolution reads (Mamba-2's width - 1;
  // 0 without Mamba-2 layers): every unit must hold at least that many tokens.
  int64_t conv_halo_rows() const {
    return pattern.find('M') != std::string::npos ? mamba_conv_width - 1 : 0;
  }
};

}  // namespace rt
