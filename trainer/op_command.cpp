// `ringtrain op NAME --in in.h5 --out out.h5`: one kernel or layer, forward and backward, on
// tensors from an HDF5 file, every output and gradient written to another: the way to compare
// ringtrain with any other implementation through h5py. Dataset names are in README.md.
#include "trainer/op_command.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "data/h5.h"
#include "kernels/arena.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/gla.h"
#include "model/mamba2.h"
#include "model/mlp.h"
#include "trainer/recipe.h"

namespace rt {

namespace {

class Input {
 public:
  explicit Input(const std::string& path) : path_(path) {
    try {
      file_ = h5::File::open_read(path);
    } catch (const h5::Error& e) {
      throw UserError(cat("--in ", path, ": ", e.what()));
    }
  }

  bool has(const std::string& name) const { return file_.exists("/" + name); }

  // A dataset as an f32 tensor; `ndims` lists the accepted ranks.
  Tensor tensor(const std::string& name, std::initializer_list<int> ndims) const {
    if (!has(name)) throw UserError(cat(path_, ": missing dataset '", name, "'"));
    const h5::DatasetInfo info = file_.info("/" + name);
    bool rank_ok = false;
    for (int n : ndims) rank_ok |= static_cast<int>(info.dims.size()) == n;
    if (!rank_ok || info.type_class != H5T_FLOAT)
      throw UserError(cat(path_, ": dataset '", name, "' must be a float array of rank ",
                          *ndims.begin(), ndims.size() > 1 ? " or more" : ""));
    Shape shape;
    for (uint64_t d : info.dims) shape.dims[shape.ndim++] = static_cast<int64_t>(d);
    Tensor t = Tensor::empty(shape);
    try {
      file_.read_into<float>("/" + name, t.f32(), static_cast<uint64_t>(t.numel()));
    } catch (const h5::Error& e) {
      throw UserError(cat(path_, ": ", e.what()));
    }
    return t;
  }

  Tensor expect(const std::string& name, Shape shape) const {
    Tensor t = tensor(name, {shape.ndim});
    if (t.shape() != shape)
      throw UserError(cat(path_, ": dataset '", name, "' has shape ", t.shape().str(),
                          ", expected ", shape.str()));
    return t;
  }

  std::optional<double> number(const std::string& name) const {
    if (!file_.has_attr("/", name)) return std::nullopt;
    try {
      return file_.attr_double("/", name);
    } catch (const h5::Error& e) {
      throw UserError(cat(path_, ": attribute '", name, "': ", e.what()));
    }
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  h5::File file_;
};

class Output {
 public:
  explicit Output(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    try {
      file_ = h5::File::create(tmp_);
    } catch (const h5::Error& e) {
      throw UserError(cat("--out ", path, ": cannot create ", tmp_));
    }
  }
  void put(const std::string& name, const Tensor& t) {
    std::vector<uint64_t> dims(t.shape().dims, t.shape().dims + t.ndim());
    const auto slash = name.rfind('/');
    // cat(), not "/" + ...: GCC 12 warns (-Wrestrict, a false positive) on that operator+.
    if (slash != std::string::npos) file_.create_groups(cat("/", name.substr(0, slash)));
    file_.write(cat("/", name), t.f32(), dims);
  }
  void finish() {
    file_.close();
    std::filesystem::rename(tmp_, path_);
  }

 private:
  std::string path_, tmp_;
  h5::File file_;
};

std::string format_number(double v) {
  char buf[64];
  if (v == std::floor(v) && std::abs(v) < 1e15) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The layer's shape: the model keys found as file attributes (same names as in recipes),
// validated by the recipe loader itself.
ModelConfig layer_config(const Input& in, char symbol, int64_t d_model) {
  std::string yaml = cat("model:\n  pattern: \"", symbol, "\"\n  d_model: ", d_model, "\n");
  for (const std::string& key : recipe_keys()) {
    if (key.rfind("model.", 0) != 0) continue;
    const std::string name = key.substr(6);
    if (name == "pattern" || name == "d_model" || name == "tied_embeddings") continue;
    if (auto v = in.number(name)) yaml += cat("  ", name, ": ", format_number(*v), "\n");
  }
  // The recipe's other sections only need to be valid; the op runs on the file's T tokens.
  yaml += "data:\n  corpus: unused\n  seq_len: 4096\ntrain:\n  tokens_per_step: 4096\n";
  return parse_recipe(yaml, in.path()).model;
}

int run_glr(const Input& in, Output& out) {
  const Tensor q = in.tensor("q", {3}), k = in.expect("k", q.shape());
  const Tensor v = in.tensor("v", {3});
  const int64_t T = q.size(0), H = v.size(1), dk = q.size(2), dv = v.size(2);
  const Tensor g = in.tensor("g", {2, 3});
  const Tensor dout = in.expect("dout", v.shape());
  const Tensor h0 = in.has("h0") ? in.expect("h0", {H, dk, dv}) : Tensor();
  const Tensor dh_final = in.has("dh_final") ? in.expect("dh_final", {H, dk, dv}) : Tensor();
  if (v.size(0) != T || H % q.size(1) != 0)
    throw UserError(cat(in.path(), ": v ", v.shape().str(), " does not match q ", q.shape().str(),
                        "; expected [T, H, dv] with H a multiple of q's heads"));
  const float scale = static_cast<float>(in.number("scale").value_or(1.0 / std::sqrt(static_cast<double>(dk))));
  const int64_t chunk = static_cast<int64_t>(in.number("chunk").value_or(64));
  if (chunk < 16 || chunk > 256) throw UserError(cat(in.path(), ": attribute chunk ", chunk, "; expected 16..256"));
  Tensor o = Tensor::empty(v.shape()), h_final = Tensor::empty({H, dk, dv});
  Tensor states = Tensor::empty({(T + chunk - 1) / chunk + 1, H, dk, dv});
  ops::glr_forward(o, h_final, states, q, k, v, g, h0, scale, chunk);
  Tensor dq = Tensor::empty(q.shape()), dkk = Tensor::empty(k.shape()), dvv = Tensor::empty(v.shape()),
         dg = Tensor::empty(g.shape()), dh0 = Tensor::empty({H, dk, dv});
  ops::glr_backward(dq, dkk, dvv, dg, dh0, q, k, v, g, states, dout, dh_final, scale, chunk);
  for (auto [name, t] : {std::pair{"o", o}, {"h_final", h_final}, {"dq", dq}, {"dk", dkk},
                         {"dv", dvv}, {"dg", dg}, {"dh0", dh0}})
    out.put(name, t);
  return 0;
}

int run_layer(const Input& in, Output& out, char symbol) {
  const Tensor x = in.tensor("x", {2});
  const int64_t T = x.size(0), C = x.size(1);
  const Tensor dy = in.expect("dy", {T, C});
  const ModelConfig cfg = layer_config(in, symbol, C);
  ParameterSet params;
  std::unique_ptr<Layer> layer;
  switch (symbol) {
    case '*': layer = std::make_unique<AttentionLayer>("layer", cfg, params); break;
    case '-': layer = std::make_unique<MlpLayer>("layer", cfg, params); break;
    case 'G': layer = std::make_unique<GlaLayer>("layer", cfg, params); break;
    default: layer = std::make_unique<Mamba2Layer>("layer", cfg, params); break;
  }
  params.allocate();
  for (size_t id = 0; id < params.all().size(); ++id) {
    const Parameter& p = params.all()[id];
    copy_tensor(params.value(static_cast<int>(id)), in.expect(p.name.substr(6), p.shape));
  }
  // One causal sequence of T tokens at positions 0..T-1.
  std::vector<int32_t> positions(T);
  for (int64_t t = 0; t < T; ++t) positions[t] = static_cast<int32_t>(t);
  Tensor pos = Tensor::wrap(positions.data(), {T}, DType::I32);
  Tensor rope = Tensor::empty({T, cfg.head_dim / 2, 2});
  ops::rope_table(rope, pos, static_cast<float>(cfg.rope_theta));
  const SequenceLayout layout = SequenceLayout::zigzag(T, 1, 0);
  const SequenceContext seq{&layout, 1, nullptr};
  const LayerContext ctx{cfg, params, rope, seq};
  Arena arena;
  Tensor y = Tensor::empty({T, C}), dx = Tensor::empty({T, C});
  layer->forward(y, x, ctx, arena);
  layer->backward(dx, dy, x, ctx, arena);
  out.put("y", y);
  out.put("dx", dx);
  for (size_t id = 0; id < params.all().size(); ++id)
    out.put("grad/" + params.all()[id].name.substr(6), params.grad(static_cast<int>(id)));
  return 0;
}

}  // namespace

int run_op(const std::string& name, const std::string& in_path, const std::string& out_path) {
  static const std::pair<const char*, char> kLayers[] = {
      {"attention", '*'}, {"mlp", '-'}, {"gla", 'G'}, {"mamba2", 'M'}};
  std::optional<char> symbol;
  for (auto [n, s] : kLayers)
    if (name == n) symbol = s;
  if (name != "glr" && !symbol)
    throw UserError(cat("op: unknown op '", name, "'; expected glr, attention, mlp, gla or mamba2"));
  const Input in(in_path);
  Output out(out_path);
  const int rc = symbol ? run_layer(in, out, *symbol) : run_glr(in, out);
  out.finish();
  return rc;
}

}  // namespace rt
