#include "trainer/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/check.h"
#include "core/files.h"
#include "data/h5.h"
#include "kernels/ops.h"

namespace rt {

namespace fs = std::filesystem;

namespace {

std::string step_file_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%07lld.h5", static_cast<long long>(step));
  return buf;
}

// The step-NNNNNNN.h5 files of dir with their steps, oldest first.
std::vector<std::pair<int64_t, fs::path>> steps_in(const std::string& dir) {
  static const std::regex name(R"(step-(\d{7,})\.h5)");
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code missing;
  for (const auto& entry : fs::directory_iterator(dir, missing)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, m, name)) found.emplace_back(std::stoll(m[1]), entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Keeps the newest keep_last - 1 checkpoints before `step` (which was just written).
void remove_old_checkpoints(const std::string& dir, int64_t step, int64_t keep_last) {
  std::vector<fs::path> earlier;
  for (const auto& [s, path] : steps_in(dir))
    if (s < step) earlier.push_back(path);
  for (size_t i = 0; i + (keep_last - 1) < earlier.size(); ++i) fs::remove(earlier[i]);
}

// latest_checkpoint for messages written while a save fails: never throws.
std::string latest_or_none(const std::string& dir) {
  try {
    return latest_checkpoint(dir);
  } catch (const std::exception&) {
    return "";
  }
}

// The checkpoint file at tmp: header, parameters and, with an optimizer, its moments.
void write_checkpoint_file(const std::string& tmp, const CheckpointState& state,
                           const ParameterSet& params, const AdamWOptimizer* optim,
                           const CheckpointFaultHook& fault) {
  h5::File f = h5::File::create(tmp);
  f.set_attr("/", "format", std::string(kCheckpointFormat));
  f.set_attr("/", "version", kCheckpointVersion);
  f.set_attr("/", "step", state.step);
  f.set_attr("/", "tokens_seen", state.tokens_seen);
  f.set_attr("/", "dp", state.dp);
  f.set_attr("/", "sp", state.sp);
  f.set_attr("/", "recipe", state.recipe_yaml);
  f.set_attr("/", "corpus_fingerprint", state.corpus_fingerprint);
  const uint64_t seed = static_cast<uint64_t>(state.seed);
  f.write("/rng", &seed, {1});
  f.create_groups("/data");
  f.set_attr("/data", "mode", state.data_mode);
  f.set_attr("/data", "seed", state.seed);
  f.set_attr("/data", "step", state.step);
  f.create_groups("/params");
  // The GPU's tensors are read through host copies, made once for the whole file.
  const Tensor values = to_device(params.flat_values(), Device::CPU);
  Tensor m, v;
  if (optim) m = to_device(optim->m(), Device::CPU), v = to_device(optim->v(), Device::CPU);
  for (const Parameter& p : params.all()) {
    std::vector<uint64_t> dims(p.shape.dims, p.shape.dims + p.shape.ndim);
    const int64_t n = p.shape.numel();
    f.write("/params/" + p.name, values.rows(p.offset, n).f32(), dims);
    if (fault) fault("/params/" + p.name);
    if (!optim) continue;
    const std::string group = "/optim/" + p.name;
    f.create_groups(group);
    f.write(group + "/m", m.rows(p.offset, n).f32(), dims);
    f.write(group + "/v", v.rows(p.offset, n).f32(), dims);
    if (fault) fault(group);
  }
  f.close();
}

}  // namespace

std::string save_checkpoint(const std::string& dir, const CheckpointState& state,
                            const ParameterSet& params, const AdamWOptimizer& optim,
                            int64_t keep_last, const CheckpointFaultHook& fault) {
  const std::string path = (fs::path(dir) / step_file_name(state.step)).string();
  const std::string tmp = path + ".tmp";
  // No checkpoint ever holds a non-finite value: the trainer stops before one could be saved,
  // and the writer refuses one all the same (exit 3), leaving the last good checkpoint.
  if (const std::string bad = first_non_finite(params, optim.m(), optim.v()); !bad.empty()) {
    const std::string previous = latest_or_none(dir);
    throw RunError(cat("checkpoint ", path, " not written: ", bad, " holds a non-finite value; ",
                       previous.empty() ? std::string("no earlier checkpoint exists")
                                        : "the last good checkpoint is " + previous),
                   kExitDiverged);
  }
  try {
    fs::create_directories(dir);
    write_checkpoint_file(tmp, state, params, &optim, fault);
    commit_file(tmp, path);
    replace_file((fs::path(dir) / "latest").string(), step_file_name(state.step) + "\n");
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    const std::string previous = latest_or_none(dir);
    throw RunError(cat("checkpoint ", path, " not written: ", e.what(), "; ",
                       previous.empty() ? std::string("no earlier checkpoint exists")
                                        : "the last good checkpoint is " + previous),
                   1);
  }
  remove_old_checkpoints(dir, state.step, std::max<int64_t>(keep_last, 1));
  return path;
}

void save_weights(const std::string& path, const CheckpointState& state,
                  const ParameterSet& params) {
  const std::string tmp = path + ".tmp";
  const Tensor none;
  if (const std::string bad = first_non_finite(params, none, none); !bad.empty())
    throw UserError(cat(path, " not written: ", bad, " holds a non-finite value"));
  try {
    const fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    write_checkpoint_file(tmp, state, params, nullptr, {});
    commit_file(tmp, path);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw RunError(cat(path, " not written: ", e.what()), 1);
  }
}

std::string latest_checkpoint(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "latest");
  std::string name;
  if (!in) return "";
  if (!std::getline(in, name) || name.empty() || !fs::exists(fs::path(dir) / name))
    throw UserError(
        cat((fs::path(dir) / "latest").string(), ": names ",
            name.empty() ? "no file" : "'" + name + "'",
            name.empty() || fs::exists(fs::path(dir) / name) ? "" : ", which does not exist",
            "; expected the name of a checkpoint in ", dir,
            ". Resume from one by path (--resume=FILE), or remove the directory to start over"));
  return (fs::path(dir) / name).string();
}

std::vector<std::string> checkpoint_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& [step, path] : steps_in(dir)) files.push_back(path.string());
  return files;
}

namespace {

h5::File open_checkpoint(const std::string& path) {
  if (!fs::exists(path))
    throw UserError(cat("checkpoint ", path,
                        " does not exist; expected a step-NNNNNNN.h5 file "
                        "written by 'ringtrain train' (or its run directory with --resume)"));
  try {
    h5::File f = h5::File::open_read(path);
    const std::string format = f.has_attr("/", "format") ? f.attr_string("/", "format") : "";
    if (format != kCheckpointFormat)
      throw UserError(cat(path, ": format is '", format, "', expected '", kCheckpointFormat,
                          "'; this is not a ringtrain checkpoint"));
    const int64_t version = f.attr_int("/", "version");
    if (version != kCheckpointVersion)
      throw UserError(cat(path, ": checkpoint version ", version, " is not supported; expected ",
                          kCheckpointVersion));
    return f;
  } catch (const h5::Error& e) {
    throw UserError(cat(path, ": ", e.what(), "; expected a ringtrain checkpoint"));
  }
}

// The header, every attribute checked: a checkpoint that says step -5 or sp 3 is corrupt (a
// bit flip, a hand edit), and would otherwise reach the data schedule's arithmetic.
CheckpointState read_state(const h5::File& f, const std::string& path) {
  auto corrupt = [&](const std::string& what) {
    return UserError(
        cat(path, ": corrupt checkpoint: ", what,
            " (ringtrain inspect shows its header; resume from an earlier checkpoint)"));
  };
  // 2^62: far beyond any run, and step x tokens_per_step arithmetic stays inside int64.
  constexpr int64_t kMaxCount = int64_t(1) << 62;
  auto count = [&](const std::string& object, const std::string& name, int64_t lo) {
    const int64_t v = f.attr_int(object, name);
    if (v < lo || v > kMaxCount)
      throw corrupt(cat("attribute ", object == "/" ? "" : object + "/", name, " is ", v,
                        "; expected ", lo, " to 2^62"));
    return v;
  };
  CheckpointState s;
  s.step = count("/", "step", 0);
  s.tokens_seen = count("/", "tokens_seen", 0);
  s.dp = count("/", "dp", 1);
  s.sp = count("/", "sp", 1);
  if ((s.sp & (s.sp - 1)) != 0)
    throw corrupt(cat("attribute sp is ", s.sp, "; expected a power of two"));
  s.recipe_yaml = f.attr_string("/", "recipe");
  s.corpus_fingerprint = f.attr_string("/", "corpus_fingerprint");
  s.seed = count("/data", "seed", 0);
  s.data_mode = f.attr_string("/data", "mode");
  if (s.data_mode != "concat_chunk" && s.data_mode != "decomposed")
    throw corrupt(
        cat("attribute /data/mode is '", s.data_mode, "'; expected concat_chunk or decomposed"));
  const int64_t data_step = count("/data", "step", 0);
  if (data_step != s.step)
    throw corrupt(cat("the data cursor /data/step ", data_step, " differs from step ", s.step));
  const std::vector<uint64_t> rng = f.read_all<uint64_t>("/rng", 1);
  if (rng.size() != 1 || rng[0] != static_cast<uint64_t>(s.seed))
    throw corrupt(cat("/rng does not hold the seed ", s.seed, " of /data"));
  return s;
}

std::string shape_str(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

CheckpointState read_checkpoint_state(const std::string& path,
                                      std::vector<CheckpointParam>* params) {
  h5::File f = open_checkpoint(path);
  try {
    CheckpointState s = read_state(f, path);
    if (params) {
      params->clear();
      for (const std::string& name : f.children("/params"))
        params->push_back({name, f.info("/params/" + name).dims});
    }
    return s;
  } catch (const h5::Error& e) {
    throw UserError(cat(path, ": ", e.what(), " (truncated or not a ringtrain checkpoint)"));
  }
}

namespace {

// The first difference between the checkpoint's tensors and the model's, before anything is
// read: a parameter the model needs that the file lacks, one of another shape, or one the model
// does not have (a checkpoint of 8 layers resumed into a recipe of 4); with the optimizer, the
// moments of every parameter too.
void check_matches(const h5::File& f, const std::string& path, const ParameterSet& params,
                   bool with_moments, const std::string& advice) {
  for (const Parameter& p : params.all()) {
    const std::string name = "/params/" + p.name;
    const std::vector<uint64_t> want(p.shape.dims, p.shape.dims + p.shape.ndim);
    if (!f.exists(name))
      throw UserError(cat(path, ": has no parameter '", p.name, "' ", shape_str(want),
                          " that the recipe's model needs", advice));
    const h5::DatasetInfo info = f.info(name);
    if (info.dims != want || info.type_class != H5T_FLOAT)
      throw UserError(cat(path, ": parameter '", p.name, "' has shape ", shape_str(info.dims),
                          info.type_class == H5T_FLOAT ? "" : " (not float)",
                          ", the recipe's model expects ", shape_str(want), advice));
    if (!with_moments) continue;
    for (const char* moment : {"m", "v"}) {
      const std::string m = cat("/optim/", p.name, "/", moment);
      if (!f.exists(m))
        throw UserError(cat(path, ": corrupt checkpoint: no AdamW moment ", m, " for parameter '",
                            p.name, "'"));
      const h5::DatasetInfo mi = f.info(m);
      if (mi.dims != want || mi.type_class != H5T_FLOAT)
        throw UserError(cat(path, ": corrupt checkpoint: AdamW moment ", m, " has shape ",
                            shape_str(mi.dims), ", its parameter ", shape_str(want)));
    }
  }
  for (const std::string& name : f.children("/params"))
    if (params.find(name) < 0)
      throw UserError(
          cat(path, ": holds parameter '", name, "' ", shape_str(f.info("/params/" + name).dims),
              " that the recipe's model does not have (the model has ", params.all().size(),
              " parameters, the checkpoint ", f.children("/params").size(), ")", advice));
}

// A checkpoint holds finite values only (the writer refuses others): a non-finite one is
// named, with exit code 3.
void check_finite(const std::string& path, const std::string& dataset, const Tensor& values) {
  if (!ops::all_finite(values))
    throw RunError(cat(path, ": ", dataset,
                       " holds a non-finite value; a checkpoint must be "
                       "finite (resume from an earlier one)"),
                   kExitDiverged);
}

}  // namespace

CheckpointState load_checkpoint(const std::string& path, ParameterSet& params,
                                AdamWOptimizer* optim) {
  RT_CHECK(params.flat_values().device() == Device::CPU,
           "load_checkpoint reads into host parameters; move them to the GPU after loading");
  h5::File f = open_checkpoint(path);
  try {
    CheckpointState s = read_state(f, path);
    if (optim && !f.exists("/optim"))
      throw UserError(cat(path,
                          ": holds weights only (no AdamW state: written by 'ringtrain convert'); "
                          "start a run from it with checkpoint.init_from, --resume continues a "
                          "run from its own checkpoints"));
    check_matches(f, path, params, optim != nullptr,
                  cat("; resume with the recipe the checkpoint was written with (ringtrain "
                      "inspect ",
                      path, ")"));
    for (const Parameter& p : params.all()) {
      const std::string name = "/params/" + p.name;
      const int64_t n = p.shape.numel();
      const Tensor value = params.flat_values().rows(p.offset, n);
      f.read_into<float>(name, value.f32(), n);
      check_finite(path, name, value);
      if (optim) {
        for (const auto& [moment, flat] : {std::pair{"m", optim->m()}, {"v", optim->v()}}) {
          const std::string m = cat("/optim/", p.name, "/", moment);
          const Tensor rows = flat.rows(p.offset, n);
          f.read_into<float>(m, rows.f32(), n);
          check_finite(path, m, rows);
        }
      }
    }
    params.refresh_bf16_copy();  // a no-op unless the GEMMs' bf16 copy is kept
    return s;
  } catch (const h5::Error& e) {
    throw UserError(cat(path, ": ", e.what(), " (truncated or not a ringtrain checkpoint)"));
  }
}

void check_weights_match(const std::string& path, const ParameterSet& params,
                         const std::string& key) {
  h5::File f = open_checkpoint(path);
  try {
    read_state(f, path);
    check_matches(
        f, path, params, false,
        cat("; ", key, " needs a model section equal to the checkpoint's (ringtrain inspect ", path,
            " prints it)"));
  } catch (const h5::Error& e) {
    throw UserError(cat(path, ": ", e.what(), " (truncated or not a ringtrain checkpoint)"));
  }
}

}  // namespace rt
