// The pattern alphabet in one place: each symbol of model.pattern, its name (the `ringtrain op`
// name), what users call it, the scope of its parameter names, and its constructor. The model
// builder, the recipe check and `ringtrain op` read this table and nothing else.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "model/layer.h"
#include "model/params.h"

namespace rt {

struct LayerKind {
  char symbol;                   // in model.pattern
  std::string_view name;         // "attention", "mlp", "gla", "mamba2"
  std::string_view description;  // for messages: "SwiGLU MLP"
  std::string_view scope;        // parameter names: layers.<i>.<scope>.<tensor>
  std::unique_ptr<Layer> (*make)(const std::string& prefix, const ModelConfig& config,
                                 ParameterSet& params);
};

const std::vector<LayerKind>& layer_kinds();
const LayerKind* layer_kind(char symbol);            // null for a symbol that is no layer
const LayerKind* layer_kind(std::string_view name);  // null for an unknown name
// "'*' (attention), '-' (SwiGLU MLP), 'G' (GLA), 'M' (Mamba-2)", for messages.
std::string layer_symbols_described();

}  // namespace rt
