// Hugging Face model classes <-> ringtrain models: the config.json keys and the tensor names.
//   LlamaForCausalLM   (also Qwen2ForCausalLM with its q, k, v biases: model.attention_bias,
//                       and MistralForCausalLM without a sliding window)
//       each decoder layer i is two ringtrain layers: 2i attention '*', 2i+1 SwiGLU MLP '-';
//       gate_proj and up_proj are stacked into w_gate_up (gate first).
//   Mamba2ForCausalLM  each layer one 'M' (the same in_proj rows z | x | B | C | dt, conv,
//                       dt_bias, A_log, D, grouped gated norm, out_proj as ringtrain's).
//   NemotronHForCausalLM  its layer list is a ringtrain pattern of M, * and -: Mamba-2 as
//                       above, attention without RoPE (model.rope: false), the MLP up_proj,
//                       squared ReLU, down_proj (model.mlp_activation: relu2).
// A config key ringtrain has no equivalent for (hidden_act other than silu, a bias, a sliding
// window, ...) is refused naming the key and what would be valid (docs/DESIGN.md §9).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"

namespace rt {

// One ringtrain parameter and the HF tensors it is made of: one, or several stacked along the
// first dimension in this order.
struct HfTensorMap {
  std::string ours;
  std::vector<std::string> theirs;
  std::vector<int64_t> hf_shape;  // when theirs is one tensor of another shape (conv1d's [C, 1, W])
};

// The model config.json describes (`where` names the file in messages). UserError for an
// unknown architecture or a key ringtrain cannot honour.
ModelConfig model_from_hf_config(const nlohmann::json& config, const std::string& where,
                                 std::string* architecture);
// The HF class a ringtrain model exports as, and its config.json.
std::string hf_architecture_of(const ModelConfig& cfg);
nlohmann::json hf_config_from_model(const ModelConfig& cfg);
// Every ringtrain parameter of cfg with its HF tensors.
std::vector<HfTensorMap> hf_tensor_map(const ModelConfig& cfg, const std::string& architecture);

}  // namespace rt
