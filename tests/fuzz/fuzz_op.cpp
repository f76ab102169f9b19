// `ringtrain op` inputs: a valid input file of one of the five ops (small shapes), edited by the
// bytes (fuzz_input.h's script: other shapes, types, values, extents, attributes, misspelt
// names), then run_op as the command runs it. The first byte picks the op.
#include "data/h5.h"
#include "tests/fuzz/fuzz_input.h"
#include "trainer/op_command.h"

namespace {

using namespace rt;

struct OpBase {
  std::string op;
  std::vector<std::pair<std::string, std::vector<uint64_t>>> datasets;
  std::vector<std::pair<std::string, int64_t>> attributes;
};

const std::vector<OpBase>& bases() {
  static const std::vector<OpBase> b = {
      {"glr",
       {{"q", {20, 1, 4}},
        {"k", {20, 1, 4}},
        {"v", {20, 2, 3}},
        {"g", {20, 2}},
        {"dout", {20, 2, 3}},
        {"h0", {2, 4, 3}},
        {"dh_final", {2, 4, 3}}},
       {{"chunk", 16}}},
      {"attention",
       {{"x", {5, 8}},
        {"dy", {5, 8}},
        {"wq", {8, 8}},
        {"wk", {4, 8}},
        {"wv", {4, 8}},
        {"wo", {8, 8}}},
       {{"heads", 2}, {"kv_heads", 1}}},
      {"mlp",
       {{"x", {5, 8}}, {"dy", {5, 8}}, {"w_gate_up", {16, 8}}, {"w_down", {8, 8}}},
       {{"mlp_hidden", 8}}},
      {"gla",
       {{"x", {5, 8}},
        {"dy", {5, 8}},
        {"wq", {4, 8}},
        {"wk", {4, 8}},
        {"wv", {8, 8}},
        {"wg", {8, 8}},
        {"w_gate1", {16, 8}},
        {"w_gate2", {4, 16}},
        {"b_gate", {4}},
        {"norm", {4}},
        {"wo", {8, 8}}},
       {{"gla_heads", 2}, {"glr_chunk", 16}}},
      {"mamba2",
       {{"x", {6, 8}},
        {"dy", {6, 8}},
        {"in_proj", {44, 8}},
        {"conv_w", {24, 4}},
        {"conv_b", {24}},
        {"dt_bias", {4}},
        {"A_log", {4}},
        {"D", {4}},
        {"norm", {16}},
        {"out_proj", {8, 16}}},
       {{"mamba_headdim", 4}, {"mamba_d_state", 4}, {"glr_chunk", 16}}},
  };
  return b;
}

const std::vector<char>& base_file(size_t which) {
  static std::vector<std::vector<char>> files(bases().size());
  if (files[which].empty()) {
    const OpBase& base = bases()[which];
    const std::string path = fuzz::temp_path("op-base.h5");
    {
      h5::File f = h5::File::create(path);
      uint64_t state = 12345;
      for (const auto& [name, dims] : base.datasets) {
        uint64_t n = 1;
        for (uint64_t d : dims) n *= d;
        std::vector<float> values(n);
        for (float& v : values) {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          v = static_cast<float>(static_cast<int64_t>(state >> 40) % 200 - 100) / 250.0f;
          if (name == "g") v = -std::abs(v);
        }
        f.write("/" + name, values.data(), dims);
      }
      for (const auto& [name, value] : base.attributes) f.set_attr("/", name, value);
    }
    files[which] = fuzz::read_file(path);
    std::remove(path.c_str());
  }
  return files[which];
}

fuzz::Names names() {
  fuzz::Names n;
  n.float_limit = 4;  // see fuzz_input.h: f32 overflow inside the kernels is out of scope here
  n.groups = {"/", "/grad"};
  for (const OpBase& base : bases()) {
    for (const auto& d : base.datasets) n.datasets.push_back("/" + d.first);
    for (const auto& a : base.attributes) n.attributes.push_back(a.first);
  }
  for (const char* a :
       {"scale", "heads", "kv_heads", "head_dim", "mlp_hidden", "rope_theta", "norm_eps",
        "init_std", "gla_expand_k", "gla_expand_v", "mamba_d_state", "mamba_expand",
        "mamba_ngroups", "mamba_conv_width", "rope_thta", "d_model", "pattern"})
    n.attributes.push_back(a);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Names kNames = names();
  fuzz::Bytes b(data, size);
  const size_t which = b.below(bases().size());
  const std::string in = fuzz::temp_path("op-in.h5"), out = fuzz::temp_path("op-out.h5");
  const std::vector<char>& base = base_file(which);
  fuzz::write_file(in, base.data(), base.size());
  fuzz::run_script(in, b, kNames);
  fuzz::expect_only_user_errors("fuzz_op", [&] { run_op(bases()[which].op, in, out); });
  std::remove(in.c_str());
  std::remove(out.c_str());
  return 0;
}
