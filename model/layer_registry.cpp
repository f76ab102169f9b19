#include "model/layer_registry.h"

#include "core/check.h"
#include "model/attention.h"
#include "model/gla.h"
#include "model/mamba2.h"
#include "model/mlp.h"

namespace rt {

namespace {

template <class L>
std::unique_ptr<Layer> make(const std::string& prefix, const ModelConfig& config,
                            ParameterSet& params) {
  return std::make_unique<L>(prefix, config, params);
}

}  // namespace

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds = {
      {'*', "attention", "attention", "attn", make<AttentionLayer>},
      {'-', "mlp", "SwiGLU MLP", "mlp", make<MlpLayer>},
      {'G', "gla", "GLA", "gla", make<GlaLayer>},
      {'M', "mamba2", "Mamba-2", "mamba", make<Mamba2Layer>},
  };
  return kinds;
}

const LayerKind* layer_kind(char symbol) {
  for (const LayerKind& k : layer_kinds())
    if (k.symbol == symbol) return &k;
  return nullptr;
}

const LayerKind* layer_kind(std::string_view name) {
  for (const LayerKind& k : layer_kinds())
    if (k.name == name) return &k;
  return nullptr;
}

std::string layer_symbols_described() {
  std::string out;
  for (const LayerKind& k : layer_kinds())
    out += cat(out.empty() ? "" : ", ", "'", k.symbol, "' (", k.description, ")");
  return out;
}

}  // namespace rt
