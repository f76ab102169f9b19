// `ringtrain op NAME --in in.h5 --out out.h5`: one kernel or layer, forward and backward, on
// tensors from an HDF5 file, every output and gradient written to another: the way to compare
// ringtrain with any other implementation through h5py. Dataset names are in README.md.
#include "trainer/op_command.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "data/h5.h"
#include "data/memory.h"
#include "kernels/arena.h"
#include "kernels/ops.h"
#include "model/layer_registry.h"
#include "trainer/recipe.h"

namespace rt {

namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string shape_str(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Bad input (exit 2) names the file; non-finite outputs (exit 3) too.
class Input {
 public:
  explicit Input(const std::string& path) : path_(path) {
    try {
      file_ = h5::File::open_read(path);
    } catch (const h5::Error& e) {
      throw UserError(cat("--in ", path, ": ", e.what()));
    }
  }

  [[noreturn]] void fail(const std::string& what) const { throw UserError(cat(path_, ": ", what)); }

  bool has(const std::string& name) const { return file_.exists("/" + name); }

  // Every dataset and attribute of the file must be one the op reads: a misspelt optional
  // input (h0, rope_thta) is refused with the nearest valid name instead of silently ignored.
  void check_attributes(const std::string& op, const std::vector<std::string>& attributes) const {
    check_names(
        "attribute", op, [&] { return file_.attr_names("/"); }, attributes);
  }
  void check_datasets(const std::string& op, const std::vector<std::string>& datasets) const {
    check_names(
        "dataset", op, [&] { return file_.children("/"); }, datasets);
  }

  // The shape of a float dataset of one of the ranks `ndims`, every size >= 1; `form` names
  // the expected shape in the user's terms ("[T, H, dv]").
  std::vector<uint64_t> dims(const std::string& name, std::initializer_list<int> ndims,
                             const std::string& form) const {
    if (!has(name)) fail(cat("missing dataset '", name, "'; expected float32 ", form));
    h5::DatasetInfo info;
    try {
      info = file_.info("/" + name);
    } catch (const h5::Error& e) {
      fail(e.what());
    }
    bool rank_ok = false;
    for (int n : ndims) rank_ok |= static_cast<int>(info.dims.size()) == n;
    if (!rank_ok || info.type_class != H5T_FLOAT)
      fail(cat("dataset '", name, "' is ", info.type_class == H5T_FLOAT ? "a float" : "a non-float",
               " array of shape ", shape_str(info.dims), "; expected float32 ", form));
    for (uint64_t d : info.dims)
      if (d == 0 || d > static_cast<uint64_t>(INT32_MAX))
        fail(cat("dataset '", name, "' has shape ", shape_str(info.dims), "; expected ", form,
                 " with every size from 1 to 2^31 - 1"));
    try {
      file_.check_stored("/" + name, info, sizeof(float));
    } catch (const h5::Error& e) {
      fail(e.what());
    }
    return info.dims;
  }

  // The dataset, which must have `shape` (checked by dims() or expect_shape() before), as f32;
  // every value finite.
  Tensor read(const std::string& name, Shape shape) const {
    Tensor t = Tensor::empty(shape);
    try {
      file_.read_into<float>("/" + name, t.f32(), static_cast<uint64_t>(t.numel()));
    } catch (const h5::Error& e) {
      fail(e.what());
    }
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t.f32()[i]))
        fail(cat("dataset '", name, "' holds ", t.f32()[i], " at flat index ", i,
                 "; expected finite values"));
    return t;
  }

  // A dataset that must have exactly `shape` (its dims checked, not read).
  void expect_shape(const std::string& name, Shape shape, const std::string& form) const {
    const std::vector<uint64_t> d = dims(name, {shape.ndim}, form);
    const std::vector<uint64_t> want(shape.dims, shape.dims + shape.ndim);
    if (d != want)
      fail(cat("dataset '", name, "' has shape ", shape_str(d), ", expected ", shape_str(want),
               " (", form, ")"));
  }

  std::optional<double> number(const std::string& name) const {
    if (!file_.has_attr("/", name)) return std::nullopt;
    try {
      return file_.attr_double("/", name);
    } catch (const h5::Error& e) {
      fail(cat("attribute '", name, "': ", e.what(), "; expected one number"));
    }
  }

  // An integer attribute in [lo, hi], or `fallback` when absent.
  int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
    const std::optional<double> v = number(name);
    if (!v) return fallback;
    if (!(*v >= static_cast<double>(lo) && *v <= static_cast<double>(hi)) || *v != std::floor(*v))
      fail(cat("attribute '", name, "' is ", *v, "; expected an integer from ", lo, " to ", hi));
    return static_cast<int64_t>(*v);
  }

  const std::string& path() const { return path_; }

 private:
  template <class List>
  void check_names(const char* kind, const std::string& op, List&& list,
                   const std::vector<std::string>& valid) const {
    std::vector<std::string> names;
    try {
      names = list();
    } catch (const h5::Error& e) {
      fail(e.what());
    }
    for (const std::string& name : names)
      if (std::find(valid.begin(), valid.end(), name) == valid.end())
        fail(unknown(kind, op, name, valid));
  }

  std::string unknown(const char* kind, const std::string& op, const std::string& name,
                      const std::vector<std::string>& valid) const {
    std::string quoted;
    for (char c : name) quoted += static_cast<unsigned char>(c) < 0x20 ? '?' : c;
    const std::string message = cat("unknown ", kind, " '", quoted, "' for op ", op);
    if (auto guess = nearest_name(name, valid))
      return cat(message, " (did you mean '", *guess, "'?)");
    return cat(message, "; valid: ", valid.empty() ? std::string("none") : join_names(valid));
  }

  std::string path_;
  h5::File file_;
};

class Output {
 public:
  explicit Output(const std::string& path) : path_(path), tmp_(path + ".tmp") {}
  void put(const std::string& name, const Tensor& t) { outputs_.emplace_back(name, t); }
  // Non-finite outputs (an input that overflows the op) are refused before anything is
  // written: exit 3 naming the first such output.
  void finish() {
    for (const auto& [name, t] : outputs_)
      if (!ops::all_finite(t))
        throw RunError(cat("op output '", name, "' is not finite (the inputs overflow the op); ",
                           path_, " not written"),
                       kExitDiverged);
    h5::File file;
    try {
      file = h5::File::create(tmp_);
    } catch (const h5::Error& e) {
      throw UserError(cat("--out ", path_, ": cannot create ", tmp_));
    }
    for (const auto& [name, t] : outputs_) {
      std::vector<uint64_t> dims(t.shape().dims, t.shape().dims + t.ndim());
      const auto slash = name.rfind('/');
      // cat(), not "/" + ...: GCC 12 warns (-Wrestrict, a false positive) on that operator+.
      if (slash != std::string::npos) file.create_groups(cat("/", name.substr(0, slash)));
      file.write(cat("/", name), t.f32(), dims);
    }
    file.close();
    std::filesystem::rename(tmp_, path_);
  }

 private:
  std::string path_, tmp_;
  std::vector<std::pair<std::string, Tensor>> outputs_;
};

std::string format_number(double v) {
  char buf[64];
  if (v == std::floor(v) && std::abs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else
    std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// What the op will allocate, against the memory available: refused before allocating.
void check_memory(const Input& in, double bytes) {
  const MemoryAvailable available = host_memory_available();
  if (bytes > static_cast<double>(available.bytes))
    in.fail(cat("the op needs ~", format_bytes(bytes), " for these shapes, more than the ",
                format_bytes(static_cast<double>(available.bytes)), " available (",
                available.source, "); expected smaller inputs"));
}

// The layer attributes: the model keys of a recipe (same names), other than the pattern,
// d_model (x's width) and tied_embeddings.
std::vector<std::string> layer_attributes() {
  std::vector<std::string> names;
  for (const std::string& key : recipe_keys()) {
    if (key.rfind("model.", 0) != 0) continue;
    const std::string name = key.substr(6);
    if (name == "pattern" || name == "d_model" || name == "tied_embeddings") continue;
    names.push_back(name);
  }
  return names;
}

// The layer's shape: the model keys found as file attributes, validated by the recipe loader
// itself.
ModelConfig layer_config(const Input& in, char symbol, int64_t d_model) {
  std::string yaml = cat("model:\n  pattern: \"", symbol, "\"\n  d_model: ", d_model, "\n");
  for (const std::string& name : layer_attributes())
    if (auto v = in.number(name)) yaml += cat("  ", name, ": ", format_number(*v), "\n");
  // The recipe's other sections only need to be valid; the op runs on the file's T tokens.
  yaml += "data:\n  corpus: unused\n  seq_len: 4096\ntrain:\n  tokens_per_step: 4096\n";
  return parse_recipe(yaml, in.path() + " (its attributes)").model;
}

Shape to_shape(const std::vector<uint64_t>& dims) {
  Shape s;
  for (uint64_t d : dims) s.dims[s.ndim++] = static_cast<int64_t>(d);
  return s;
}

int run_glr(const Input& in, Output& out) {
  in.check_attributes("glr", {"scale", "chunk"});
  in.check_datasets("glr", {"q", "k", "v", "g", "dout", "h0", "dh_final"});
  // Shapes first, every one against the others, before anything is read or allocated.
  const Shape qs = to_shape(in.dims("q", {3}, "q [T, Hg, dk]"));
  const int64_t T = qs[0], Hg = qs[1], dk = qs[2];
  in.expect_shape("k", qs, "k [T, Hg, dk], the shape of q");
  const Shape vs = to_shape(in.dims("v", {3}, "v [T, H, dv]"));
  const int64_t H = vs[1], dv = vs[2];
  if (vs[0] != T)
    in.fail(cat("dataset 'v' has shape ", vs.str(), " but q has ", T, " tokens (", qs.str(),
                "); expected v [T, H, dv] with q's T = ", T));
  if (H % Hg != 0)
    in.fail(cat("dataset 'v' has ", H, " heads, not a multiple of q's ", Hg, " groups (q ",
                qs.str(), ", v ", vs.str(),
                "); expected H a multiple of Hg (heads of a group share q and k)"));
  const Shape gs =
      to_shape(in.dims("g", {2, 3}, "g [T, H, dk] (per channel) or [T, H] (per head)"));
  if (gs.ndim == 3) {
    if (gs != Shape{T, H, dk})
      in.fail(cat("dataset 'g' has shape ", gs.str(), ", expected [", T, ", ", H, ", ", dk,
                  "] (per channel) or [", T, ", ", H, "] (per head)"));
    if (Hg != H)
      in.fail(cat("dataset 'g' is a per-channel decay ", gs.str(), " but q and k have ", Hg,
                  " groups for ", H,
                  " heads; expected q, k [T, H, dk] (one group per head) or "
                  "g [T, H] (one decay per head)"));
  } else if (gs != Shape{T, H}) {
    in.fail(cat("dataset 'g' has shape ", gs.str(), ", expected [", T, ", ", H, "] (per head) or [",
                T, ", ", H, ", ", dk, "] (per channel)"));
  }
  in.expect_shape("dout", vs, "dout [T, H, dv], the shape of v");
  const Shape state{H, dk, dv};
  if (in.has("h0")) in.expect_shape("h0", state, "h0 [H, dk, dv]");
  if (in.has("dh_final")) in.expect_shape("dh_final", state, "dh_final [H, dk, dv]");
  const double scale = in.number("scale").value_or(1.0 / std::sqrt(static_cast<double>(dk)));
  if (!std::isfinite(scale) || std::abs(scale) > 3.4e38)
    in.fail(cat("attribute 'scale' is ", scale, "; expected a finite number"));
  const int64_t chunk = in.integer("chunk", 64, 16, 256);
  const double chunks = static_cast<double>((T + chunk - 1) / chunk + 1);
  // Inputs and their gradients twice over, the per-chunk states, three state-sized tensors.
  check_memory(in, 4.0 * (2.0 * (2.0 * qs.numel() + 2.0 * vs.numel() + gs.numel()) +
                          (chunks + 4.0) * static_cast<double>(state.numel())));

  const Tensor q = in.read("q", qs), k = in.read("k", qs), v = in.read("v", vs),
               g = in.read("g", gs);
  for (int64_t i = 0; i < g.numel(); ++i)
    if (g.f32()[i] > 0)
      in.fail(cat("dataset 'g' holds ", g.f32()[i], " at flat index ", i,
                  "; expected log decays <= 0"));
  const Tensor dout = in.read("dout", vs);
  const Tensor h0 = in.has("h0") ? in.read("h0", state) : Tensor();
  const Tensor dh_final = in.has("dh_final") ? in.read("dh_final", state) : Tensor();
  Tensor o = Tensor::empty(vs), h_final = Tensor::empty(state);
  Tensor states = Tensor::empty({(T + chunk - 1) / chunk + 1, H, dk, dv});
  ops::glr_forward(o, h_final, states, q, k, v, g, h0, static_cast<float>(scale), chunk);
  Tensor dq = Tensor::empty(qs), dkk = Tensor::empty(qs), dvv = Tensor::empty(vs),
         dg = Tensor::empty(gs), dh0 = Tensor::empty(state);
  ops::glr_backward(dq, dkk, dvv, dg, dh0, q, k, v, g, states, dout, dh_final,
                    static_cast<float>(scale), chunk);
  for (auto [name, t] : {std::pair{"o", o},
                         {"h_final", h_final},
                         {"dq", dq},
                         {"dk", dkk},
                         {"dv", dvv},
                         {"dg", dg},
                         {"dh0", dh0}})
    out.put(name, t);
  return 0;
}

int run_layer(const Input& in, Output& out, char symbol, const std::string& op) {
  const std::vector<std::string> attributes = layer_attributes();
  in.check_attributes(op, attributes);  // datasets once the layer names them
  const Shape xs = to_shape(in.dims("x", {2}, "x [T, C]"));
  const int64_t T = xs[0], C = xs[1];
  const ModelConfig cfg = layer_config(in, symbol, C);
  // The conv's halo rows come from the sequence's two halves (the layout of one rank): it
  // needs T / 2 >= width - 1, as a recipe needs seq_len / (2 sp).
  if (symbol == 'M' && T / 2 < cfg.mamba_conv_width - 1)
    in.fail(cat("dataset 'x' has ", T, " tokens, too few for the conv of mamba_conv_width ",
                cfg.mamba_conv_width, "; expected at least 2 x (width - 1) = ",
                2 * (cfg.mamba_conv_width - 1), " tokens"));
  ParameterSet params;
  std::unique_ptr<Layer> layer;
  layer = layer_kind(symbol)->make("layer", cfg, params);
  std::vector<std::string> datasets = {"x", "dy"};
  for (const Parameter& p : params.all()) datasets.push_back(p.name.substr(6));
  in.check_datasets(op, datasets);
  in.expect_shape("dy", xs, "dy [T, C], the shape of x");
  for (const Parameter& p : params.all())
    in.expect_shape(p.name.substr(6), p.shape,
                    cat(p.name.substr(6), " ", p.shape.str(), " for these attributes"));
  const SequenceLayout layout = SequenceLayout::zigzag(T, 1, 0);
  const double floats =
      2.0 * static_cast<double>(params.numel()) + 4.0 * static_cast<double>(xs.numel()) +
      (symbol == '*' ? static_cast<double>(T) * static_cast<double>(cfg.head_dim) : 0.0) +
      static_cast<double>(layer->saved_floats(T, layout)) +
      static_cast<double>(
          std::max(layer->forward_floats(T, layout), layer->backward_floats(T, layout)));
  check_memory(in, 4.0 * floats);

  const Tensor x = in.read("x", xs), dy = in.read("dy", xs);
  params.allocate();
  for (size_t id = 0; id < params.all().size(); ++id) {
    const Parameter& p = params.all()[id];
    copy_tensor(params.value(static_cast<int>(id)), in.read(p.name.substr(6), p.shape));
  }
  // One causal sequence of T tokens at positions 0..T-1.
  std::vector<int32_t> positions(T);
  for (int64_t t = 0; t < T; ++t) positions[t] = static_cast<int32_t>(t);
  Tensor pos = Tensor::wrap(positions.data(), {T}, DType::I32);
  // Only attention rotates (an MLP/GLA/Mamba-2 input's head_dim attribute sizes nothing).
  Tensor rope;
  if (symbol == '*') {
    rope = Tensor::empty({T, cfg.head_dim / 2, 2});
    ops::rope_table(rope, pos, cfg.rope_frequencies(T));
  }
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
  std::optional<char> symbol;
  if (const LayerKind* kind = layer_kind(std::string_view(name))) symbol = kind->symbol;
  if (name != "glr" && !symbol) {
    std::vector<std::string> ops = {"glr"};
    for (const LayerKind& k : layer_kinds()) ops.emplace_back(k.name);
    const std::optional<std::string> guess = nearest_name(name, ops);
    throw UserError(cat("op: unknown op '", name, "'",
                        guess ? cat(" (did you mean '", *guess, "'?)") : "", "; expected ",
                        choices_of(ops)));
  }
  const Input in(in_path);
  Output out(out_path);
  const int rc = symbol ? run_layer(in, out, *symbol, name) : run_glr(in, out);
  out.finish();
  return rc;
}

}  // namespace rt
