#include "hf/convert.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"
#include "core/files.h"
#include "data/memory.h"
#include "hf/hf_model.h"
#include "model/model.h"
#include "trainer/checkpoint.h"
#include "trainer/eval_command.h"
#include "trainer/recipe.h"

namespace rt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw UserError(cat(path.string(),
                        ": cannot read (a Hugging Face model directory holds "
                        "config.json and model.safetensors)"));
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw UserError(cat(path.string(), ": not valid JSON"));
  return j;
}

// The tensors of a Hugging Face directory: model.safetensors, or the shards its index names.
class HfWeights {
 public:
  explicit HfWeights(const fs::path& dir) : dir_(dir) {
    if (fs::exists(dir / kSingleFile)) {
      add_file(kSingleFile);
      for (const SafeTensorInfo& t : files_.back()->tensors())
        where_[t.name] = {files_.back().get(), &t};
      return;
    }
    const fs::path index = dir / kIndexFile;
    if (!fs::exists(index))
      throw UserError(cat(dir.string(), ": holds neither ", kSingleFile, " nor ", kIndexFile,
                          " (only safetensors weights are read; convert .bin files with "
                          "transformers' save_pretrained first)"));
    const json j = read_json_file(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw UserError(cat(index.string(), ": expected an object with a weight_map"));
    std::map<std::string, SafetensorsReader*> by_file;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        throw UserError(cat(index.string(), ": weight_map.", name, " is ", file.dump(),
                            "; expected a file name in ", dir.string()));
      const std::string f = file.get<std::string>();
      if (!by_file.count(f)) by_file[f] = add_file(f);
      const SafeTensorInfo* t = by_file[f]->find(name);
      if (!t)
        throw UserError(
            cat(index.string(), ": weight_map puts ", name, " in ", f, ", which does not hold it"));
      where_[name] = {by_file[f], t};
    }
  }

  const SafeTensorInfo& info(const std::string& name, const std::string& architecture) const {
    const auto it = where_.find(name);
    if (it == where_.end())
      throw UserError(cat(dir_.string(), ": no tensor ", name, ", which ", architecture,
                          " needs (a truncated download, or another model class?)"));
    return *it->second.second;
  }
  void read(const std::string& name, float* out) const {
    const auto& [file, t] = where_.at(name);
    file->read_f32(*t, out);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, at] : where_) out.push_back(name);
    return out;
  }

 private:
  SafetensorsReader* add_file(const std::string& name) {
    files_.push_back(std::make_unique<SafetensorsReader>((dir_ / name).string()));
    return files_.back().get();
  }

  fs::path dir_;
  std::vector<std::unique_ptr<SafetensorsReader>> files_;
  std::map<std::string, std::pair<const SafetensorsReader*, const SafeTensorInfo*>> where_;
};

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The `model:` section of a resolved recipe's YAML.
std::string model_section(const std::string& yaml) {
  const size_t begin = yaml.find("\nmodel:");
  if (begin == std::string::npos) return yaml;
  size_t end = begin + 1;
  while ((end = yaml.find('\n', end + 1)) != std::string::npos && end + 1 < yaml.size() &&
         yaml[end + 1] == ' ') {}
  return yaml.substr(begin + 1, end == std::string::npos ? std::string::npos : end - begin);
}

// The HF tensors of one ringtrain parameter: the parts stacked along its first dimension (one
// unless gate and up), each with its HF shape and where its values start in the parameter.
struct HfPart {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset;
};
std::vector<HfPart> parts_of(const Parameter& p, const HfTensorMap& m) {
  const int64_t parts = static_cast<int64_t>(m.theirs.size());
  std::vector<int64_t> shape(p.shape.dims, p.shape.dims + p.shape.ndim);
  shape[0] /= parts;
  if (!m.hf_shape.empty()) shape = m.hf_shape;
  std::vector<HfPart> out;
  for (int64_t i = 0; i < parts; ++i)
    out.push_back({m.theirs[i], shape, i * (p.shape.numel() / parts)});
  return out;
}

int import_hf(const ConvertOptions& o) {
  const fs::path dir = o.from, config_path = dir / "config.json";
  std::string architecture;
  const ModelConfig cfg =
      model_from_hf_config(read_json_file(config_path), config_path.string(), &architecture);
  Recipe recipe;
  recipe.model = cfg;
  recipe.data.corpus = cat("none (weights converted from ", dir.string(), ")");
  // Through the recipe's own checks: what is imported is a model ringtrain can train.
  recipe = parse_recipe(recipe_to_yaml(recipe), config_path.string() + " (as a recipe)");
  const std::unique_ptr<Model> model = allocate_model(recipe.model, dir.string());
  ParameterSet& params = model->params();

  const HfWeights weights(dir);
  std::set<std::string> used;
  for (const HfTensorMap& m : hf_tensor_map(recipe.model, architecture)) {
    const int id = params.find(m.ours);
    const std::vector<HfPart> parts = parts_of(params.all().at(static_cast<size_t>(id)), m);
    for (size_t i = 0; i < parts.size(); ++i) {
      const SafeTensorInfo& t = weights.info(parts[i].name, architecture);
      if (t.shape != parts[i].shape)
        throw UserError(cat(
            dir.string(), ": tensor ", parts[i].name, " has shape ", shape_text(t.shape),
            "; config.json's model needs ", shape_text(parts[i].shape), " there (",
            parts.size() == 1 ? m.ours : cat("part ", i + 1, " of ", parts.size(), " of ", m.ours),
            ")"));
      weights.read(parts[i].name, params.value(id).f32() + parts[i].offset);
      used.insert(parts[i].name);
    }
  }
  for (const std::string& name : weights.names()) {
    const bool harmless = name.ends_with("rotary_emb.inv_freq") ||  // a cache, recomputed
                          (recipe.model.tied_embeddings && name == "lm_head.weight");
    if (!used.count(name) && !harmless)
      throw UserError(cat(dir.string(), ": tensor ", name, " has no place in ringtrain's ",
                          architecture, " model (an option of config.json it does not read?)"));
  }
  CheckpointState state;
  state.data_mode = "concat_chunk";
  state.recipe_yaml = recipe_to_yaml(recipe);
  save_weights(o.to, state, params);
  std::printf("converted %s (%s, %lld parameters) to %s\n", dir.c_str(), architecture.c_str(),
              static_cast<long long>(model->num_params()), o.to.c_str());
  std::printf("start a run from it with checkpoint.init_from: %s and this model section:\n%s",
              o.to.c_str(), model_section(state.recipe_yaml).c_str());
  return 0;
}

int export_hf(const ConvertOptions& o) {
  CheckpointState state;
  const std::unique_ptr<Model> model = load_model(o.from, state);
  const ModelConfig& cfg = model->config();
  const std::string architecture = hf_architecture_of(cfg);
  const fs::path out = o.to;
  for (const char* f : {"config.json", kSingleFile, kIndexFile})
    if (fs::exists(out / f))
      throw UserError(cat(o.to, " already holds a model (", f,
                          "); remove it or convert into another directory"));
  fs::create_directories(out);

  // Every HF tensor, a view of its rows of a ringtrain parameter, in the map's order.
  const ParameterSet& params = model->params();
  std::vector<SafeTensorOut> tensors;
  for (const HfTensorMap& m : hf_tensor_map(cfg, architecture)) {
    const int id = params.find(m.ours);
    for (const HfPart& part : parts_of(params.all().at(static_cast<size_t>(id)), m))
      tensors.push_back({part.name, part.shape, params.value(id).f32() + part.offset});
  }
  // Shards of at most shard_bytes (a larger tensor alone), named as transformers names them.
  std::vector<std::vector<SafeTensorOut>> shards(1);
  uint64_t shard_size = 0, total = 0;
  for (const SafeTensorOut& t : tensors) {
    const uint64_t bytes = safetensors_bytes(o.dtype, t.numel());
    if (shard_size > 0 && shard_size + bytes > o.shard_bytes) shards.emplace_back(), shard_size = 0;
    shards.back().push_back(t);
    shard_size += bytes;
    total += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors((out / kSingleFile).string(), tensors, o.dtype, metadata);
  } else {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", json::object()}};
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors((out / name).string(), shards[i], o.dtype, metadata);
      for (const SafeTensorOut& t : shards[i]) index["weight_map"][t.name] = name;
    }
    replace_file((out / kIndexFile).string(), index.dump(2) + "\n");
  }
  json config = hf_config_from_model(cfg);
  config["torch_dtype"] = o.dtype == StDType::BF16 ? "bfloat16" : "float32";
  replace_file((out / "config.json").string(), config.dump(2) + "\n");
  std::printf("converted %s (step %lld) to %s: %s, %zu file(s) of %s, %s\n", o.from.c_str(),
              static_cast<long long>(state.step), o.to.c_str(), architecture.c_str(), shards.size(),
              name_of(o.dtype), format_bytes(static_cast<double>(total)).c_str());
  return 0;
}

}  // namespace

int run_convert(const ConvertOptions& options) {
  if (fs::is_directory(options.from)) return import_hf(options);
  if (fs::is_regular_file(options.from)) return export_hf(options);
  throw UserError(cat("convert: ", options.from,
                      " does not exist; expected a Hugging Face model directory (config.json + "
                      "safetensors) or a ringtrain checkpoint .h5"));
}

}  // namespace rt
