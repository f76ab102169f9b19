// The model's shape, as the recipe's `model:` section gives it (torchtitan's ModelArgs).
// Derived values (head_dim, mlp_hidden, kv_heads when 0) are filled by resolve().
#pragma once

#include <cstdint>
#include <string>

namespace rt {

struct ModelConfig {
  // One symbol per residual layer (Megatron's hybrid convention):
  //   '*' softmax attention, '-' SwiGLU MLP ('M' Mamba-2 and 'G' GLA come later).
  std::string pattern = "*-*-";
  int64_t vocab_size = 258;   // byte tokenizer: 256 bytes + <eos> + <pad>
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t kv_heads = 0;       // 0: same as heads (no GQA)
  int64_t head_dim = 0;       // 0: d_model / heads
  int64_t mlp_hidden = 0;     // 0: 8/3 d_model rounded up to a multiple of 64 (Llama)
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tied_embeddings = true;
  double init_std = 0.02;

  // Fills the derived values; call after every explicit value is set.
  void resolve() {
    if (kv_heads == 0) kv_heads = heads;
    if (head_dim == 0 && heads > 0) head_dim = d_model / heads;
    if (mlp_hidden == 0) mlp_hidden = (8 * d_model / 3 + 63) / 64 * 64;
  }
};

}  // namespace rt
