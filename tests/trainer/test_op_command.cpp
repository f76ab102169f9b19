// `ringtrain op`: tensors in from HDF5, every output and gradient out. The recurrence and the
// MLP are checked against the double references through the files; attention, GLA and Mamba-2
// by a finite difference through the files (their dx against y at x +- eps u).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "data/h5.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"
#include "tests/trainer/process.h"
#include "trainer/op_command.h"

namespace rt {
namespace {

namespace fs = std::filesystem;
using ref::Vec;

class OpFiles : public ::testing::Test {
 public:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ringtrain-op-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static void put(h5::File& f, const std::string& name, const Tensor& t) {
    f.write(cat("/", name), t.f32(),
            std::vector<uint64_t>(t.shape().dims, t.shape().dims + t.ndim()));
  }
  static Vec get(const std::string& file, const std::string& name) {
    const std::vector<float> values = h5::File::open_read(file).read_all<float>(cat("/", name));
    return Vec(values.begin(), values.end());
  }
  fs::path dir_;
};

TEST_F(OpFiles, GlrMatchesTheReference) {
  const int T = 70, H = 2, dk = 8, dv = 12;
  Tensor q = testing::random_tensor({T, H, dk}, 1), k = testing::random_tensor({T, H, dk}, 2),
         v = testing::random_tensor({T, H, dv}, 3), g = Tensor::empty({T, H, dk}),
         h0 = testing::random_tensor({H, dk, dv}, 4), dout = testing::random_tensor({T, H, dv}, 5),
         dhf = testing::random_tensor({H, dk, dv}, 6);
  for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] = -0.05f * static_cast<float>(1 + i % 7);
  {
    h5::File f = h5::File::create(path("in.h5"));
    for (auto [n, t] : {std::pair{"q", q},
                        {"k", k},
                        {"v", v},
                        {"g", g},
                        {"h0", h0},
                        {"dout", dout},
                        {"dh_final", dhf}})
      put(f, n, t);
    f.set_attr("/", "chunk", int64_t(16));
  }
  ASSERT_EQ(run_op("glr", path("in.h5"), path("out.h5")), 0);
  const ref::GlrShape s{T, H, H, dk, dv, true, 1.0 / std::sqrt(8.0)};
  Vec o, hf, dq, dkk, dvv, dg, dh0;
  ref::glr(testing::to_vec(q), testing::to_vec(k), testing::to_vec(v), testing::to_vec(g),
           testing::to_vec(h0), s, o, hf);
  ref::glr_backward(testing::to_vec(q), testing::to_vec(k), testing::to_vec(v), testing::to_vec(g),
                    testing::to_vec(h0), testing::to_vec(dout), testing::to_vec(dhf), s, dq, dkk,
                    dvv, dg, dh0);
  const std::string out = path("out.h5");
  for (auto [n, want] : {std::pair{"o", &o},
                         {"h_final", &hf},
                         {"dq", &dq},
                         {"dk", &dkk},
                         {"dv", &dvv},
                         {"dg", &dg},
                         {"dh0", &dh0}})
    EXPECT_LT(testing::rel_rms_error(get(out, n), *want), 1e-5) << n;
}

TEST_F(OpFiles, MlpMatchesTheReference) {
  const int T = 9, C = 16, F = 24;
  Tensor x = testing::random_tensor({T, C}, 7), dy = testing::random_tensor({T, C}, 8),
         wgu = testing::random_tensor({2 * F, C}, 9, 0.3f),
         wd = testing::random_tensor({C, F}, 10, 0.3f);
  {
    h5::File f = h5::File::create(path("in.h5"));
    for (auto [n, t] : {std::pair{"x", x}, {"dy", dy}, {"w_gate_up", wgu}, {"w_down", wd}})
      put(f, n, t);
    f.set_attr("/", "mlp_hidden", int64_t(F));
  }
  ASSERT_EQ(run_op("mlp", path("in.h5"), path("out.h5")), 0);
  const Vec gu = ref::linear(testing::to_vec(x), testing::to_vec(wgu), T, C, 2 * F);
  const Vec a = ref::swiglu(gu, T, F);
  EXPECT_LT(testing::rel_rms_error(get(path("out.h5"), "y"),
                                   ref::linear(a, testing::to_vec(wd), T, F, C)),
            1e-5);
  Vec da, dwd, dx, dwgu;
  ref::linear_backward(testing::to_vec(dy), a, testing::to_vec(wd), T, F, C, da, dwd);
  ref::linear_backward(ref::swiglu_backward(da, gu, T, F), testing::to_vec(x), testing::to_vec(wgu),
                       T, C, 2 * F, dx, dwgu);
  EXPECT_LT(testing::rel_rms_error(get(path("out.h5"), "dx"), dx), 1e-5);
  EXPECT_LT(testing::rel_rms_error(get(path("out.h5"), "grad/w_down"), dwd), 1e-5);
  EXPECT_LT(testing::rel_rms_error(get(path("out.h5"), "grad/w_gate_up"), dwgu), 1e-5);
}

// The layer ops: dx . u against (y(x + eps u) - y(x - eps u)) . dy / (2 eps), all through files.
void check_layer(OpFiles& t, const std::string& op,
                 const std::vector<std::pair<std::string, Shape>>& params,
                 const std::vector<std::pair<std::string, double>>& attrs, int64_t T, int64_t C) {
  Tensor x = testing::random_tensor({T, C}, 11), dy = testing::random_tensor({T, C}, 12),
         u = testing::random_tensor({T, C}, 13);
  std::vector<Tensor> values;
  for (size_t i = 0; i < params.size(); ++i)
    values.push_back(testing::random_tensor(params[i].second, 20 + i, 0.2f));
  auto write = [&](const std::string& file, float shift) {
    h5::File f = h5::File::create(file);
    Tensor xs = Tensor::empty({T, C});
    for (int64_t i = 0; i < x.numel(); ++i) xs.f32()[i] = x.f32()[i] + shift * u.f32()[i];
    OpFiles::put(f, "x", xs);
    OpFiles::put(f, "dy", dy);
    for (size_t i = 0; i < params.size(); ++i) OpFiles::put(f, params[i].first, values[i]);
    for (auto [name, v] : attrs) f.set_attr("/", name, static_cast<int64_t>(v));
  };
  auto f_of = [&](float shift) {
    const std::string in = t.path("in" + std::to_string(shift) + ".h5"), out = t.path("out.h5");
    write(in, shift);
    EXPECT_EQ(run_op(op, in, out), 0);
    const Vec y = OpFiles::get(out, "y");
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * dy.f32()[i];
    return std::make_pair(s, OpFiles::get(out, "dx"));
  };
  const auto [f0, dx] = f_of(0.0f);
  double analytic = 0;
  for (size_t i = 0; i < dx.size(); ++i) analytic += dx[i] * u.f32()[i];
  const double eps = 1e-2;
  const double fd = (f_of(eps).first - f_of(-eps).first) / (2 * eps);
  EXPECT_NEAR(fd, analytic, 2e-3 * std::abs(analytic)) << op;
  for (auto [name, shape] : params) {
    h5::File f = h5::File::open_read(t.path("out.h5"));
    EXPECT_TRUE(f.exists("/grad/" + name)) << op << " " << name;
  }
}

TEST_F(OpFiles, AttentionGlaMamba2ByFiniteDifferences) {
  const int64_t T = 40, C = 16;
  check_layer(*this, "attention",
              {{"wq", {16, C}}, {"wk", {8, C}}, {"wv", {8, C}}, {"wo", {C, 16}}},
              {{"heads", 2}, {"kv_heads", 1}}, T, C);
  check_layer(*this, "gla",
              {{"wq", {8, C}},
               {"wk", {8, C}},
               {"wv", {16, C}},
               {"wg", {16, C}},
               {"w_gate1", {16, C}},
               {"w_gate2", {8, 16}},
               {"b_gate", {8}},
               {"norm", {8}},
               {"wo", {C, 16}}},
              {{"gla_heads", 2}, {"glr_chunk", 16}}, T, C);
  // d_inner 32 = 4 heads of 8, 2 groups of d_state 4, conv 4: in_proj rows 2*32 + 2*8 + 4 = 84
  check_layer(*this, "mamba2",
              {{"in_proj", {84, C}},
               {"conv_w", {48, 4}},
               {"conv_b", {48}},
               {"dt_bias", {4}},
               {"A_log", {4}},
               {"D", {4}},
               {"norm", {32}},
               {"out_proj", {C, 32}}},
              {{"mamba_headdim", 8}, {"mamba_d_state", 4}, {"mamba_ngroups", 2}, {"glr_chunk", 16}},
              T, C);
}

TEST_F(OpFiles, BadInputIsAUserError) {
  {
    h5::File f = h5::File::create(path("in.h5"));
    put(f, "x", testing::random_tensor({4, 8}, 1));
    put(f, "dy", testing::random_tensor({4, 8}, 2));
  }
  try {
    run_op("mlp", path("in.h5"), path("out.h5"));
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("missing dataset 'w_gate_up'"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(run_op("lstm", path("in.h5"), path("out.h5")), UserError);
  EXPECT_THROW(run_op("glr", path("absent.h5"), path("out.h5")), UserError);
  EXPECT_FALSE(fs::exists(path("out.h5")));
}

// Every bad input of `ringtrain op` is one line on stderr and exit code 2, from the real
// binary: shapes that do not fit each other, zero sizes, unknown or misspelt names, values the
// op cannot take; outputs that overflow are exit code 3 and no file.
class OpErrors : public OpFiles {
 public:
  // A glr input: q, k [T, Hg, dk], v, dout [T, H, dv], g of `g_shape`, plus extras.
  std::string glr_file(int64_t T, int64_t Hg, int64_t H, Shape g_shape, float qk_value = 0.0f,
                       const std::function<void(h5::File&)>& extra = {}) {
    const std::string p = path("glr-" + std::to_string(counter_++) + ".h5");
    h5::File f = h5::File::create(p);
    Tensor q = testing::random_tensor({T, Hg, 8}, 1), k = testing::random_tensor({T, Hg, 8}, 2);
    if (qk_value != 0.0f)
      for (Tensor* t : {&q, &k})
        for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = qk_value;
    put(f, "q", q);
    put(f, "k", k);
    put(f, "v", testing::random_tensor({T, H, 4}, 3));
    put(f, "dout", testing::random_tensor({T, H, 4}, 4));
    Tensor g = Tensor::empty(g_shape);
    for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] = -0.1f;
    put(f, "g", g);
    if (extra) extra(f);
    return p;
  }
  testing::Outcome op(const std::string& name, const std::string& in) {
    return testing::run_ringtrain({"op", name, "--in", in, "--out", path("out.h5")});
  }
  int counter_ = 0;
};

TEST_F(OpErrors, GlrShapesThatDoNotFitAreUserErrors) {
  // Per-channel g with shared q/k groups (Hg < H): the kernels need one group per head.
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 1, 2, {20, 2, 8})), 2,
      "dataset 'g' is a per-channel decay [20, 2, 8] but q and k have 1 groups for 2 heads");
  // Per-head g with shared groups is fine.
  EXPECT_EQ(op("glr", glr_file(20, 1, 2, {20, 2})).code, 0);
  ASSERT_TRUE(fs::remove(path("out.h5")));
  // g of the wrong shape.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 2, 2, {20, 3})), 2,
                        "dataset 'g' has shape [20, 3], expected [20, 2] (per head) or [20, 2, 8]");
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 2, 2, {20, 2, 5})), 2,
                        "dataset 'g' has shape [20, 2, 5], expected [20, 2, 8]");
  // Zero heads (was SIGFPE) and zero tokens.
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 0, 2, {20, 2})), 2,
      "dataset 'q' has shape [20, 0, 8]; expected q [T, Hg, dk] with every size from 1");
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(0, 1, 1, {0, 1})), 2, "dataset 'q' has shape [0, 1, 8]");
  // Heads that are not a multiple of the groups; v with other tokens than q.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 2, 3, {20, 3})), 2,
                        "dataset 'v' has 3 heads, not a multiple of q's 2 groups");
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                                           [&](h5::File& f) {
                                             f.remove("/v");
                                             put(f, "v", testing::random_tensor({21, 1, 4}, 5));
                                           })),
                        2, "dataset 'v' has shape [21, 1, 4] but q has 20 tokens");
  // A state of the wrong shape, k unlike q, dout unlike v.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                                           [&](h5::File& f) {
                                             put(f, "h0", testing::random_tensor({1, 8, 5}, 6));
                                           })),
                        2, "dataset 'h0' has shape [1, 8, 5], expected [1, 8, 4]");
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                                           [&](h5::File& f) {
                                             f.remove("/k");
                                             put(f, "k", testing::random_tensor({20, 1, 7}, 6));
                                           })),
                        2, "dataset 'k' has shape [20, 1, 7], expected [20, 1, 8]");
  EXPECT_FALSE(fs::exists(path("out.h5")));
}

TEST_F(OpErrors, AttributesAndNamesAreChecked) {
  // A misspelt optional dataset or attribute is refused with the nearest valid name.
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                         [&](h5::File& f) {
                           put(f, "dh_finl", testing::random_tensor({1, 8, 4}, 6));
                         })),
      2, "unknown dataset 'dh_finl' for op glr (did you mean 'dh_final'?)");
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                         [&](h5::File& f) { f.set_attr("/", "chunck", int64_t(16)); })),
      2, "unknown attribute 'chunck' for op glr (did you mean 'chunk'?)");
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                         [&](h5::File& f) { f.set_attr("/", "chunk", int64_t(8)); })),
      2, "attribute 'chunk' is 8; expected an integer from 16 to 256");
  EXPECT_ONE_LINE_ERROR(
      op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                         [&](h5::File& f) { f.set_attr("/", "scale", std::string("big")); })),
      2, "attribute 'scale': attribute scale is not a number");
  // The layer ops: the recipe's model keys, misspelt.
  const std::string in = path("attn.h5");
  {
    h5::File f = h5::File::create(in);
    put(f, "x", testing::random_tensor({6, 16}, 1));
    put(f, "dy", testing::random_tensor({6, 16}, 2));
    for (const char* w : {"wq", "wk", "wv"}) put(f, w, testing::random_tensor({16, 16}, 3));
    put(f, "wo", testing::random_tensor({16, 16}, 4));
    f.set_attr("/", "heads", int64_t(2));
  }
  EXPECT_EQ(op("attention", in).code, 0);
  {
    h5::File f = h5::File::open_write(in);
    f.set_attr("/", "rope_thta", int64_t(500000));
  }
  EXPECT_ONE_LINE_ERROR(
      op("attention", in), 2,
      "unknown attribute 'rope_thta' for op attention (did you mean 'rope_theta'?)");
  EXPECT_ONE_LINE_ERROR(op("attn", in), 2, "unknown op 'attn'");
}

TEST_F(OpErrors, LayerShapesAndZeroTokens) {
  auto layer_file = [&](int64_t T, Shape wq, std::vector<std::pair<const char*, int64_t>> attrs) {
    const std::string p = path("layer-" + std::to_string(counter_++) + ".h5");
    h5::File f = h5::File::create(p);
    put(f, "x", testing::random_tensor({T, 16}, 1));
    put(f, "dy", testing::random_tensor({T, 16}, 2));
    put(f, "wq", testing::random_tensor(wq, 3));
    for (const char* w : {"wk", "wv"}) put(f, w, testing::random_tensor({16, 16}, 3));
    put(f, "wo", testing::random_tensor({16, 16}, 4));
    for (auto [n, v] : attrs) f.set_attr("/", n, v);
    return p;
  };
  // Zero tokens (was an internal error).
  EXPECT_ONE_LINE_ERROR(op("attention", layer_file(0, {16, 16}, {{"heads", 2}})), 2,
                        "dataset 'x' has shape [0, 16]; expected x [T, C] with every size from 1");
  // A weight of the wrong shape names the dataset and both shapes.
  EXPECT_ONE_LINE_ERROR(op("attention", layer_file(6, {12, 16}, {{"heads", 2}})), 2,
                        "dataset 'wq' has shape [12, 16], expected [16, 16]");
  // Attributes that do not fit x's width: the recipe loader's message.
  EXPECT_ONE_LINE_ERROR(op("attention", layer_file(6, {16, 16}, {{"heads", 3}})), 2,
                        "model.d_model: 16 is not divisible by model.heads 3");
  EXPECT_ONE_LINE_ERROR(op("attention", layer_file(6, {16, 16}, {{"heads", 0}})), 2,
                        "model.heads: 0 is too small");
}

// Found by fuzz_op: a Mamba-2 input of fewer tokens than its conv's halo reached an RT_CHECK
// of the state passing.
TEST_F(OpErrors, Mamba2NeedsTokensForItsConvHalo) {
  const std::string in = path("m.h5");
  {
    h5::File f = h5::File::create(in);
    const std::pair<const char*, Shape> tensors[] = {
        {"x", {5, 8}},    {"dy", {5, 8}},       {"in_proj", {44, 8}}, {"conv_w", {24, 4}},
        {"conv_b", {24}}, {"dt_bias", {4}},     {"A_log", {4}},       {"D", {4}},
        {"norm", {16}},   {"out_proj", {8, 16}}};
    for (const auto& [name, shape] : tensors) put(f, name, testing::random_tensor(shape, 1, 0.2f));
    f.set_attr("/", "mamba_headdim", int64_t(4));
    f.set_attr("/", "mamba_d_state", int64_t(4));
  }
  EXPECT_ONE_LINE_ERROR(op("mamba2", in), 2,
                        "dataset 'x' has 5 tokens, too few for the conv of mamba_conv_width 4; "
                        "expected at least 2 x (width - 1) = 6 tokens");
}

TEST_F(OpErrors, NonFiniteInputsAndOutputs) {
  // A NaN in an input: bad input, named.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                                           [&](h5::File& f) {
                                             f.remove("/v");
                                             Tensor v = testing::random_tensor({20, 1, 4}, 5);
                                             v.f32()[7] = std::nanf("");
                                             put(f, "v", v);
                                           })),
                        2, "dataset 'v' holds nan at flat index 7; expected finite values");
  // A positive log decay.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 0.0f,
                                           [&](h5::File& f) {
                                             f.remove("/g");
                                             Tensor g = Tensor::empty({20, 1});
                                             for (int64_t i = 0; i < 20; ++i)
                                               g.f32()[i] = i == 3 ? 0.5f : -0.1f;
                                             put(f, "g", g);
                                           })),
                        2, "dataset 'g' holds 0.5 at flat index 3; expected log decays <= 0");
  // Finite inputs whose outputs overflow f32: exit 3, nothing written.
  EXPECT_ONE_LINE_ERROR(op("glr", glr_file(20, 1, 1, {20, 1}, 1e30f)), 3,
                        "op output 'o' is not finite");
  EXPECT_FALSE(fs::exists(path("out.h5")));
}

}  // namespace
}  // namespace rt
