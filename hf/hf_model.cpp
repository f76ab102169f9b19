#include "hf/hf_model.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>
#include <utility>

#include "core/check.h"

namespace rt {

namespace {

using nlohmann::json;

constexpr const char* kLlamaLike[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};

// Typed access to config.json with messages that name the file and the key.
class ConfigKeys {
 public:
  ConfigKeys(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  const json& at(const char* key) const {
    if (!has(key)) throw UserError(cat(where_, ": key '", key, "' is missing"));
    return j_[key];
  }
  int64_t count(const char* key) const {
    const json& v = at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 1)
      throw UserError(cat(where_, ": ", key, " is ", v.dump(), "; expected an integer >= 1"));
    return v.get<int64_t>();
  }
  int64_t count_or(const char* key, int64_t fallback) const {
    return has(key) ? count(key) : fallback;
  }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_number() || !(v.get<double>() > 0))
      throw UserError(cat(where_, ": ", key, " is ", v.dump(), "; expected a number > 0"));
    return v.get<double>();
  }
  bool flag_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean())
      throw UserError(cat(where_, ": ", key, " is ", j_[key].dump(), "; expected true or false"));
    return j_[key].get<bool>();
  }
  // Refuses a key whose value ringtrain cannot honour, naming what it can.
  void require(bool ok, const char* key, const std::string& valid) const {
    if (!ok)
      throw UserError(cat(where_, ": ", key, " = ", has(key) ? j_[key].dump() : "(missing)",
                          " is not supported by ringtrain; expected ", valid));
  }
  const std::string& where() const { return where_; }

 private:
  const json& j_;
  std::string where_;
};

// RoPE: transformers 5 keeps base and scaling in rope_parameters, 4 in rope_theta and
// rope_scaling (which wins when both are there, as in transformers).
void read_rope(const json& config, const ConfigKeys& keys, ModelConfig& m) {
  const char* key = keys.has("rope_scaling")      ? "rope_scaling"
                    : keys.has("rope_parameters") ? "rope_parameters"
                                                  : nullptr;
  m.rope_theta = keys.number_or("rope_theta", 10000.0);
  if (!key) return;
  const json& rp = config[key];
  if (!rp.is_object()) throw UserError(cat(keys.where(), ": ", key, " is not an object"));
  const ConfigKeys rope(rp, cat(keys.where(), ": ", key));
  m.rope_theta = rope.number_or("rope_theta", m.rope_theta);
  const json type = rp.contains("rope_type") ? rp["rope_type"] : rp.value("type", json("default"));
  const std::optional<RopeKind> kind =
      type.is_string() ? enum_from_name<RopeKind>(type.get<std::string>()) : std::nullopt;
  rope.require(kind.has_value(), "rope_type", choices_of(EnumNames<RopeKind>::names));
  m.rope_scaling = *kind;
  rope.require(rope.number_or("partial_rotary_factor", 1.0) == 1.0, "partial_rotary_factor",
               "1 (RoPE on the whole head)");
  if (m.rope_scaling == RopeKind::Default) return;
  m.rope_factor = rope.number_or("factor", 1.0);
  // dynamic scales past max_position_embeddings; yarn and llama3 past the original context.
  m.rope_original_context = m.rope_scaling == RopeKind::Dynamic
                                ? keys.count("max_position_embeddings")
                                : rope.count_or("original_max_position_embeddings",
                                                keys.count_or("max_position_embeddings", 0));
  m.rope_low_freq_factor = rope.number_or("low_freq_factor", m.rope_low_freq_factor);
  m.rope_high_freq_factor = rope.number_or("high_freq_factor", m.rope_high_freq_factor);
  m.rope_beta_fast = rope.number_or("beta_fast", m.rope_beta_fast);
  m.rope_beta_slow = rope.number_or("beta_slow", m.rope_beta_slow);
  m.rope_attention_factor = rope.number_or("attention_factor", 0.0);
  rope.require(!rope.has("mscale") && !rope.has("mscale_all_dim"), "mscale",
               "absent (DeepSeek's yarn variant is not supported)");
  rope.require(rope.flag_or("truncate", true), "truncate", "true");
}

// [0, inf]: dt unclamped. transformers 5 writes inf as {"__float__": "Infinity"}.
void require_unclamped_dt(const json& config, const ConfigKeys& keys) {
  if (!keys.has("time_step_limit")) return;
  const json& limit = config["time_step_limit"];
  const bool ok = limit.is_array() && limit.size() == 2 && limit[0].is_number() &&
                  limit[0].get<double>() == 0.0 &&
                  !(limit[1].is_number() && std::isfinite(limit[1].get<double>()));
  keys.require(ok, "time_step_limit", "[0, inf] (no clamp of dt)");
}

// The sizes Llama's and NemotronH's configs share: vocabulary, width, attention heads, MLP.
void read_attention_and_mlp_sizes(const ConfigKeys& keys, ModelConfig& m) {
  m.vocab_size = keys.count("vocab_size");
  m.d_model = keys.count("hidden_size");
  m.heads = keys.count("num_attention_heads");
  m.kv_heads = keys.count_or("num_key_value_heads", m.heads);
  m.head_dim = keys.count_or("head_dim", m.d_model / m.heads);
  m.mlp_hidden = keys.count("intermediate_size");
  keys.require(m.heads % m.kv_heads == 0, "num_key_value_heads",
               "a divisor of num_attention_heads");
}

ModelConfig llama_config(const json& config, const ConfigKeys& keys, const std::string& arch) {
  keys.require(config.value("hidden_act", std::string("silu")) == "silu", "hidden_act", "\"silu\"");
  // Llama's attention_bias puts a bias on o_proj too, which ringtrain lacks; Qwen2 always has
  // biases on q, k and v only.
  keys.require(!keys.flag_or("attention_bias", false), "attention_bias",
               "false (biases on q, k and v alone: Qwen2ForCausalLM)");
  keys.require(!keys.flag_or("mlp_bias", false), "mlp_bias", "false");
  keys.require(!keys.has("sliding_window") || !keys.flag_or("use_sliding_window", true),
               "sliding_window", "null (attention over the whole sequence)");
  ModelConfig m;
  const int64_t layers = keys.count("num_hidden_layers");
  m.pattern.clear();
  for (int64_t i = 0; i < layers; ++i) m.pattern += "*-";
  read_attention_and_mlp_sizes(keys, m);
  read_rope(config, keys, m);
  m.norm_eps = keys.number_or("rms_norm_eps", 1e-6);
  m.tied_embeddings = keys.flag_or("tie_word_embeddings", false);
  m.init_std = keys.number_or("initializer_range", 0.02);
  m.attention_bias = arch == "Qwen2ForCausalLM";
  keys.require(m.head_dim % 2 == 0, "head_dim", "an even size (RoPE rotates pairs)");
  m.resolve();
  return m;
}

constexpr const char* kMamba2 = "Mamba2ForCausalLM";

ModelConfig mamba2_config(const json& config, const ConfigKeys& keys) {
  keys.require(config.value("hidden_act", std::string("silu")) == "silu", "hidden_act", "\"silu\"");
  keys.require(!keys.flag_or("use_bias", false), "use_bias", "false");
  keys.require(keys.flag_or("use_conv_bias", true), "use_conv_bias", "true");
  ModelConfig m;
  m.pattern = std::string(static_cast<size_t>(keys.count("num_hidden_layers")), 'M');
  m.vocab_size = keys.count("vocab_size");
  m.d_model = keys.count("hidden_size");
  m.heads = 1;  // no attention: only the unused RoPE table reads it
  m.mamba_d_state = keys.count("state_size");
  m.mamba_expand = keys.count("expand");
  m.mamba_headdim = keys.count("head_dim");
  m.mamba_ngroups = keys.count("n_groups");
  m.mamba_conv_width = keys.count("conv_kernel");
  m.norm_eps = keys.number_or("layer_norm_epsilon", 1e-5);
  m.tied_embeddings = keys.flag_or("tie_word_embeddings", false);
  m.init_std = keys.number_or("initializer_range", 0.02);
  keys.require(keys.count("num_heads") * m.mamba_headdim == m.mamba_expand * m.d_model, "num_heads",
               "expand * hidden_size / head_dim");
  require_unclamped_dt(config, keys);
  m.resolve();
  return m;
}

constexpr const char* kNemotronH = "NemotronHForCausalLM";

// NemotronH's layer types by ringtrain symbol (transformers 5's names; E is a mixture of
// experts, which ringtrain refuses), and transformers 4's names of the first two.
constexpr std::pair<char, const char*> kNemotronLayerTypes[] = {
    {'M', "linear_attention"}, {'*', "full_attention"}, {'-', "mlp"}, {'E', "moe"}, {'M', "mamba"},
    {'*', "attention"}};

const char* nemotron_layer_type(char symbol) {
  for (const auto& [s, name] : kNemotronLayerTypes)
    if (s == symbol) return name;
  RT_CHECK(false, "NemotronH has no layer '", symbol, "'");
  return nullptr;
}

// NemotronH's layers: layers_block_type's names (transformers 5, and the legacy "mamba" and
// "attention") or hybrid_override_pattern, whose symbols are ringtrain's own.
std::string nemotron_pattern(const json& config, const ConfigKeys& keys) {
  std::string pattern;
  if (keys.has("layers_block_type")) {
    const json& list = config["layers_block_type"];
    if (!list.is_array() || list.empty())
      throw UserError(cat(keys.where(), ": layers_block_type is ", list.dump(),
                          "; expected a list of layer types"));
    for (const json& t : list) {
      const auto known = std::find_if(
          std::begin(kNemotronLayerTypes), std::end(kNemotronLayerTypes),
          [&](const auto& type) { return t.is_string() && t.get<std::string>() == type.second; });
      if (known == std::end(kNemotronLayerTypes))
        throw UserError(cat(keys.where(), ": layers_block_type holds ", t.dump(),
                            "; expected linear_attention, full_attention or mlp"));
      pattern += known->first;
    }
  } else {
    const json& p = keys.at("hybrid_override_pattern");
    if (!p.is_string() || p.get<std::string>().empty())
      throw UserError(cat(keys.where(), ": hybrid_override_pattern is ", p.dump(),
                          "; expected a string of M, * and -"));
    pattern = p.get<std::string>();
  }
  const size_t bad = pattern.find_first_not_of("M*-");
  keys.require(
      bad == std::string::npos, "hybrid_override_pattern",
      cat("the symbols M (Mamba-2), * (attention) and - (MLP); ",
          bad != std::string::npos && pattern[bad] == 'E'
              ? "mixture-of-experts layers ('E') are not supported"
              : cat("found '", pattern.substr(bad == std::string::npos ? 0 : bad, 1), "'")));
  return pattern;
}

ModelConfig nemotron_h_config(const json& config, const ConfigKeys& keys) {
  keys.require(config.value("mlp_hidden_act", std::string("relu2")) == "relu2", "mlp_hidden_act",
               "\"relu2\"");
  keys.require(config.value("mamba_hidden_act", std::string("silu")) == "silu", "mamba_hidden_act",
               "\"silu\"");
  for (const char* key : {"attention_bias", "mlp_bias", "use_bias", "mamba_proj_bias"})
    keys.require(!keys.flag_or(key, false), key, "false");
  keys.require(keys.flag_or("use_conv_bias", true), "use_conv_bias", "true");
  keys.require(!keys.has("sliding_window"), "sliding_window",
               "null (attention over the whole sequence)");
  keys.require(!keys.has("num_nextn_predict_layers") || config["num_nextn_predict_layers"] == 0,
               "num_nextn_predict_layers", "0 (no multi-token prediction layers)");
  require_unclamped_dt(config, keys);
  ModelConfig m;
  m.pattern = nemotron_pattern(config, keys);
  read_attention_and_mlp_sizes(keys, m);
  m.mlp_activation = MlpActivation::Relu2;
  m.rope = false;
  m.mamba_d_state = keys.count("ssm_state_size");
  m.mamba_num_heads = keys.count("mamba_num_heads");
  m.mamba_headdim = keys.count("mamba_head_dim");
  m.mamba_expand = keys.count_or("expand", 2);
  m.mamba_ngroups = keys.count("n_groups");
  m.mamba_conv_width = keys.count("conv_kernel");
  m.norm_eps = keys.number_or("layer_norm_epsilon", 1e-5);
  m.tied_embeddings = keys.flag_or("tie_word_embeddings", false);
  m.init_std = keys.number_or("initializer_range", 0.02);
  keys.require(m.mamba_num_heads % m.mamba_ngroups == 0, "n_groups",
               "a divisor of mamba_num_heads");
  m.resolve();
  return m;
}

bool is_llama_like(const std::string& architecture) {
  for (const char* a : kLlamaLike)
    if (architecture == a) return true;
  return false;
}

}  // namespace

ModelConfig model_from_hf_config(const json& config, const std::string& where,
                                 std::string* architecture) {
  if (!config.is_object()) throw UserError(cat(where, ": not a JSON object"));
  const ConfigKeys keys(config, where);
  const json& archs = keys.at("architectures");
  if (!archs.is_array() || archs.size() != 1 || !archs[0].is_string())
    throw UserError(cat(where, ": architectures is ", archs.dump(), "; expected one class name"));
  const std::string arch = archs[0].get<std::string>();
  if (architecture) *architecture = arch;
  if (is_llama_like(arch)) return llama_config(config, keys, arch);
  if (arch == kMamba2) return mamba2_config(config, keys);
  if (arch == kNemotronH) return nemotron_h_config(config, keys);
  throw UserError(cat(where, ": architecture ", arch, " is not supported; expected one of ",
                      choices_of(kLlamaLike), ", ", kMamba2, " or ", kNemotronH));
}

std::string hf_architecture_of(const ModelConfig& cfg) {
  const std::string& p = cfg.pattern;
  if (!p.empty() && p.find_first_not_of('M') == std::string::npos) return kMamba2;
  const bool swiglu = cfg.mlp_activation == MlpActivation::SwiGlu;
  bool llama = p.size() % 2 == 0 && swiglu && cfg.rope;
  for (size_t i = 0; i < p.size(); ++i) llama = llama && p[i] == (i % 2 ? '-' : '*');
  if (llama) return cfg.attention_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  const bool mlp = p.find('-') != std::string::npos, attention = p.find('*') != std::string::npos;
  if (p.find('G') == std::string::npos && (!mlp || !swiglu) &&
      (!attention || (!cfg.rope && !cfg.attention_bias)))
    return kNemotronH;
  throw UserError(
      cat("model.pattern \"", p,
          "\" with these options has no Hugging Face class ringtrain exports to; expected \"*-\" "
          "repeated with SwiGLU and RoPE (LlamaForCausalLM, or Qwen2ForCausalLM with "
          "model.attention_bias), only M (Mamba2ForCausalLM), or M, * and - with "
          "model.mlp_activation: relu2 and model.rope: false (NemotronHForCausalLM); GLA ('G') "
          "has no transformers class"));
}

json hf_config_from_model(const ModelConfig& cfg) {
  const std::string arch = hf_architecture_of(cfg);
  // What every class writes; the rest by class.
  json j = {{"architectures", {arch}},           {"vocab_size", cfg.vocab_size},
            {"hidden_size", cfg.d_model},        {"tie_word_embeddings", cfg.tied_embeddings},
            {"initializer_range", cfg.init_std}, {"torch_dtype", "float32"}};
  if (arch == kNemotronH) {
    j["model_type"] = "nemotron_h";
    // Both: transformers 5 reads the list, 4 the string (ringtrain's symbols).
    json types = json::array();
    for (char c : cfg.pattern) types.push_back(nemotron_layer_type(c));
    j["layers_block_type"] = types;
    j["hybrid_override_pattern"] = cfg.pattern;
    j["num_attention_heads"] = cfg.heads;
    j["num_key_value_heads"] = cfg.kv_heads;
    j["head_dim"] = cfg.head_dim;
    j["intermediate_size"] = cfg.mlp_hidden;
    j["mlp_hidden_act"] = "relu2";
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["use_bias"] = false;
    j["ssm_state_size"] = cfg.mamba_d_state;
    j["mamba_num_heads"] = cfg.mamba_heads();
    j["mamba_head_dim"] = cfg.mamba_headdim;
    j["n_groups"] = cfg.mamba_ngroups;
    j["conv_kernel"] = cfg.mamba_conv_width;
    j["expand"] = cfg.mamba_expand;
    j["use_conv_bias"] = true;
    j["mamba_hidden_act"] = "silu";
    j["chunk_size"] = cfg.glr_chunk;
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["num_nextn_predict_layers"] = 0;
    j["max_position_embeddings"] = int64_t(1) << 20;  // no positions: no table to outgrow
    return j;
  }
  if (arch == kMamba2) {
    j["model_type"] = "mamba2";
    j["num_hidden_layers"] = cfg.pattern.size();
    j["state_size"] = cfg.mamba_d_state;
    j["expand"] = cfg.mamba_expand;
    j["head_dim"] = cfg.mamba_headdim;
    j["num_heads"] = cfg.mamba_heads();
    j["n_groups"] = cfg.mamba_ngroups;
    j["conv_kernel"] = cfg.mamba_conv_width;
    j["use_bias"] = false;
    j["use_conv_bias"] = true;
    j["hidden_act"] = "silu";
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["chunk_size"] = cfg.glr_chunk;
    return j;
  }
  j["model_type"] = arch == "Qwen2ForCausalLM" ? "qwen2" : "llama";
  j["intermediate_size"] = cfg.mlp_hidden;
  j["num_hidden_layers"] = cfg.pattern.size() / 2;
  j["num_attention_heads"] = cfg.heads;
  j["num_key_value_heads"] = cfg.kv_heads;
  j["head_dim"] = cfg.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = cfg.norm_eps;
  // Both spellings: transformers 5 reads rope_parameters (rope_scaling first), 4 rope_theta and
  // rope_scaling.
  j["rope_theta"] = cfg.rope_theta;
  json rope = {{"rope_type", name_of(cfg.rope_scaling)}, {"rope_theta", cfg.rope_theta}};
  if (cfg.rope_scaling != RopeKind::Default) rope["factor"] = cfg.rope_factor;
  if (cfg.rope_scaling == RopeKind::Yarn || cfg.rope_scaling == RopeKind::Llama3)
    rope["original_max_position_embeddings"] = cfg.rope_original_context;
  if (cfg.rope_scaling == RopeKind::Yarn) {
    rope["beta_fast"] = cfg.rope_beta_fast;
    rope["beta_slow"] = cfg.rope_beta_slow;
    if (cfg.rope_attention_factor > 0) rope["attention_factor"] = cfg.rope_attention_factor;
  }
  if (cfg.rope_scaling == RopeKind::Llama3) {
    rope["low_freq_factor"] = cfg.rope_low_freq_factor;
    rope["high_freq_factor"] = cfg.rope_high_freq_factor;
  }
  j["rope_parameters"] = rope;
  if (cfg.rope_scaling != RopeKind::Default) j["rope_scaling"] = rope;
  if (arch == "LlamaForCausalLM") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  } else {
    j["use_sliding_window"] = false;
  }
  // RoPE on global positions has no table to outgrow, except dynamic scaling's L0.
  j["max_position_embeddings"] =
      cfg.rope_scaling == RopeKind::Dynamic ? cfg.rope_original_context : int64_t(1) << 20;
  return j;
}

namespace {
// One Mamba-2 mixer: ringtrain's layer `ours` ("layers.i.mamba.") and HF's `mixer` prefix.
void map_mamba_mixer(std::vector<HfTensorMap>& map, const ModelConfig& cfg, const std::string& ours,
                     const std::string& mixer) {
  const int64_t conv_dim = cfg.mamba_d_inner() + 2 * cfg.mamba_ngroups * cfg.mamba_d_state;
  for (const char* w : {"in_proj", "out_proj"})
    map.push_back({cat(ours, w), {cat(mixer, w, ".weight")}, {}});
  map.push_back({ours + "conv_w", {mixer + "conv1d.weight"}, {conv_dim, 1, cfg.mamba_conv_width}});
  map.push_back({ours + "conv_b", {mixer + "conv1d.bias"}, {}});
  for (const char* w : {"dt_bias", "A_log", "D"}) map.push_back({cat(ours, w), {mixer + w}, {}});
  map.push_back({ours + "norm", {mixer + "norm.weight"}, {}});
}

void map_attention(std::vector<HfTensorMap>& map, const ModelConfig& cfg, const std::string& ours,
                   const std::string& attn) {
  for (const char* w : {"q", "k", "v", "o"})
    map.push_back({cat(ours, "w", w), {cat(attn, w, "_proj.weight")}, {}});
  if (cfg.attention_bias)
    for (const char* b : {"q", "k", "v"})
      map.push_back({cat(ours, "b", b), {cat(attn, b, "_proj.bias")}, {}});
}
}  // namespace

std::vector<HfTensorMap> hf_tensor_map(const ModelConfig& cfg, const std::string& architecture) {
  if (architecture == kMamba2 || architecture == kNemotronH) {
    std::vector<HfTensorMap> map = {{"embed.weight", {"backbone.embeddings.weight"}, {}},
                                    {"final_norm.weight", {"backbone.norm_f.weight"}, {}}};
    if (!cfg.tied_embeddings) map.push_back({"lm_head.weight", {"lm_head.weight"}, {}});
    for (size_t layer = 0; layer < cfg.pattern.size(); ++layer) {
      const std::string hf = cat("backbone.layers.", layer, "."), ours = cat("layers.", layer, ".");
      map.push_back({ours + "norm.weight", {hf + "norm.weight"}, {}});
      switch (cfg.pattern[layer]) {
        case 'M': map_mamba_mixer(map, cfg, ours + "mamba.", hf + "mixer."); break;
        case '*': map_attention(map, cfg, ours + "attn.", hf + "mixer."); break;
        default:
          map.push_back({ours + "mlp.w_up", {hf + "mixer.up_proj.weight"}, {}});
          map.push_back({ours + "mlp.w_down", {hf + "mixer.down_proj.weight"}, {}});
      }
    }
    return map;
  }
  RT_CHECK(is_llama_like(architecture), "tensor map of ", architecture);
  std::vector<HfTensorMap> map = {{"embed.weight", {"model.embed_tokens.weight"}, {}},
                                  {"final_norm.weight", {"model.norm.weight"}, {}}};
  if (!cfg.tied_embeddings) map.push_back({"lm_head.weight", {"lm_head.weight"}, {}});
  for (size_t layer = 0; layer < cfg.pattern.size() / 2; ++layer) {
    const std::string hf = cat("model.layers.", layer, "."), attn = cat("layers.", 2 * layer, "."),
                      mlp = cat("layers.", 2 * layer + 1, ".");
    map.push_back({attn + "norm.weight", {hf + "input_layernorm.weight"}, {}});
    map_attention(map, cfg, attn + "attn.", hf + "self_attn.");
    map.push_back({mlp + "norm.weight", {hf + "post_attention_layernorm.weight"}, {}});
    map.push_back(
        {mlp + "mlp.w_gate_up", {hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"}, {}});
    map.push_back({mlp + "mlp.w_down", {hf + "mlp.down_proj.weight"}, {}});
  }
  return map;
}

}  // namespace rt
