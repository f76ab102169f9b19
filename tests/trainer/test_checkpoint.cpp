// Checkpoints: exact round trip, keep-last-k, a write that fails midway leaves the previous
// checkpoint loadable and `latest` pointing at it, shape mismatches are one-line UserErrors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "tests/testing.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"

namespace rt {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  explicit Fixture(int64_t d_model = 32) {
    cfg.pattern = "*-";
    cfg.vocab_size = 20;
    cfg.d_model = d_model;
    cfg.heads = 2;
    cfg.resolve();
    model = std::make_unique<Model>(cfg);
    model->init_weights(1);
    optim = std::make_unique<AdamWOptimizer>(model->params(), OptimSection{});
    // Moments that are not zero, so that their round trip means something.
    Tensor m = optim->m(), v = optim->v();
    for (int64_t i = 0; i < m.numel(); ++i) {
      m.f32()[i] = 0.001f * static_cast<float>(i % 97);
      v.f32()[i] = 0.0001f * static_cast<float>(i % 89);
    }
  }
  ModelConfig cfg;
  std::unique_ptr<Model> model;
  std::unique_ptr<AdamWOptimizer> optim;
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ringtrain-ckpt-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }
  CheckpointState state(int64_t step) const {
    CheckpointState s;
    s.step = step;
    s.tokens_seen = step * 100;
    s.seed = 5;
    s.data_mode = "concat_chunk";
    s.recipe_yaml = "run:\n  name: \"x\"\n";
    s.corpus_fingerprint = "fnv1a64:0";
    return s;
  }
  fs::path dir_;
};

bool same(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::equal(a.f32(), a.f32() + a.numel(), b.f32());
}

TEST_F(CheckpointTest, RoundTripIsExact) {
  Fixture a;
  const std::string path = save_checkpoint(dir(), state(7), a.model->params(), *a.optim, 3);
  EXPECT_EQ(latest_checkpoint(dir()), path);
  Fixture b;
  b.model->init_weights(99);
  ops::fill(b.optim->m(), 0.0f);
  const CheckpointState s = load_checkpoint(path, b.model->params(), b.optim.get());
  EXPECT_EQ(s.step, 7);
  EXPECT_EQ(s.tokens_seen, 700);
  EXPECT_EQ(s.recipe_yaml, "run:\n  name: \"x\"\n");
  EXPECT_TRUE(same(a.model->params().flat_values(), b.model->params().flat_values()));
  EXPECT_TRUE(same(a.optim->m(), b.optim->m()));
  EXPECT_TRUE(same(a.optim->v(), b.optim->v()));

  std::vector<CheckpointParam> listed;
  read_checkpoint_state(path, &listed);
  EXPECT_EQ(listed.size(), a.model->params().all().size());
}

TEST_F(CheckpointTest, KeepsTheLastK) {
  Fixture a;
  for (int64_t step : {10, 20, 30, 40})
    save_checkpoint(dir(), state(step), a.model->params(), *a.optim, 2);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir())) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"latest", "step-0000030.h5", "step-0000040.h5"}));
}

TEST_F(CheckpointTest, AFailedWriteLeavesThePreviousCheckpoint) {
  Fixture a;
  const std::string good = save_checkpoint(dir(), state(10), a.model->params(), *a.optim, 3);
  Fixture b;
  b.model->init_weights(2);  // different values: the failed checkpoint would differ
  int written = 0;
  auto fail_midway = [&](const std::string&) {
    if (++written == 3) throw std::runtime_error("No space left on device (injected)");
  };
  try {
    save_checkpoint(dir(), state(20), b.model->params(), *b.optim, 3, fail_midway);
    FAIL() << "the injected failure did not surface";
  } catch (const RunError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
    EXPECT_NE(msg.find("the last good checkpoint is " + good), std::string::npos) << msg;
  }
  EXPECT_EQ(written, 3);
  EXPECT_FALSE(fs::exists(dir() + "/step-0000020.h5"));
  EXPECT_FALSE(fs::exists(dir() + "/step-0000020.h5.tmp"));
  EXPECT_EQ(latest_checkpoint(dir()), good);

  Fixture c;
  c.model->init_weights(3);
  EXPECT_EQ(load_checkpoint(latest_checkpoint(dir()), c.model->params(), c.optim.get()).step, 10);
  EXPECT_TRUE(same(a.model->params().flat_values(), c.model->params().flat_values()));
}

TEST_F(CheckpointTest, ShapeMismatchIsAUserErrorNamingTheParameter) {
  Fixture a(32);
  const std::string path = save_checkpoint(dir(), state(1), a.model->params(), *a.optim, 3);
  Fixture wider(48);
  try {
    load_checkpoint(path, wider.model->params(), wider.optim.get());
    FAIL() << "no error";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("parameter 'embed.weight' has shape [20, 32]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expects [20, 48]"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST_F(CheckpointTest, TheWriterRefusesNonFiniteValues) {
  Fixture a;
  const std::string good = save_checkpoint(dir(), state(10), a.model->params(), *a.optim, 3);
  EXPECT_EQ(first_non_finite(a.model->params(), a.optim->m(), a.optim->v()), "");
  const Parameter& p = a.model->params().all()[2];
  a.optim->v().f32()[p.offset + 1] = INFINITY;
  EXPECT_EQ(first_non_finite(a.model->params(), a.optim->m(), a.optim->v()),
            "AdamW moment v of '" + p.name + "'");
  try {
    save_checkpoint(dir(), state(20), a.model->params(), *a.optim, 3);
    FAIL() << "a non-finite moment was written";
  } catch (const RunError& e) {
    EXPECT_EQ(e.exit_code, kExitDiverged);
    EXPECT_NE(std::string(e.what()).find("the last good checkpoint is " + good), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dir() + "/step-0000020.h5"));
  EXPECT_FALSE(fs::exists(dir() + "/step-0000020.h5.tmp"));
  EXPECT_EQ(latest_checkpoint(dir()), good);
  a.optim->v().f32()[p.offset + 1] = 0.0f;
  a.model->params().flat_values().f32()[0] = NAN;
  EXPECT_EQ(first_non_finite(a.model->params(), a.optim->m(), a.optim->v()),
            "parameter '" + a.model->params().all()[0].name + "'");
}

TEST_F(CheckpointTest, ExtraParametersAreRefused) {
  Fixture a;
  ModelConfig deeper = a.cfg;
  deeper.pattern = "*-*-";
  Model big(deeper);
  AdamWOptimizer big_optim(big.params(), OptimSection{});
  const std::string path = save_checkpoint(dir(), state(1), big.params(), big_optim, 3);
  try {
    load_checkpoint(path, a.model->params(), a.optim.get());
    FAIL() << "a checkpoint of 4 layers loaded into a model of 2";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("holds parameter 'layers.2."), std::string::npos)
        << e.what();
  }
}

TEST_F(CheckpointTest, NotACheckpointIsAUserError) {
  fs::create_directories(dir());
  const std::string junk = dir() + "/junk.h5";
  std::ofstream(junk) << std::string(3000, 'x');
  Fixture a;
  EXPECT_THROW(load_checkpoint(junk, a.model->params(), a.optim.get()), UserError);
  EXPECT_THROW(read_checkpoint_state(dir() + "/absent.h5"), UserError);
}

TEST(Schedule, WarmupThenCosineLinearConstant) {
  OptimSection o;
  o.lr = 1.0;
  ScheduleSection s;
  s.warmup_steps = 4;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 14, 0), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 14, 3), 1.0);
  s.kind = ScheduleKind::Cosine;
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 14, 4), 1.0);
  EXPECT_NEAR(learning_rate(o, s, 14, 13), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate(o, s, 14, 8) + learning_rate(o, s, 14, 9), 1.1, 1e-12);  // symmetric
  s.kind = ScheduleKind::Linear;
  EXPECT_NEAR(learning_rate(o, s, 14, 13), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate(o, s, 14, 7), 0.7, 1e-12);  // 1/3 of the way down to 0.1
  s.kind = ScheduleKind::Constant;
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 14, 13), 1.0);
  s.kind =
      ScheduleKind::Wsd;  // peak until the last 4 steps, then linear down to 0.1 at the last step
  s.decay_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 14, 9), 1.0);
  EXPECT_NEAR(learning_rate(o, s, 14, 10), 1.0 - 0.9 / 4, 1e-12);
  EXPECT_NEAR(learning_rate(o, s, 14, 12), 1.0 - 0.9 * 3 / 4, 1e-12);
  EXPECT_NEAR(learning_rate(o, s, 14, 13), 0.1, 1e-12);
}

TEST(GradClip, ScalesToTheMaximumNorm) {
  Fixture a;
  ParameterSet& p = a.model->params();
  ops::fill(p.flat_grads(), 0.5f);
  const double norm = grad_norm(p);
  EXPECT_NEAR(norm, 0.5 * std::sqrt(static_cast<double>(p.numel())), 1e-6 * norm);
  EXPECT_EQ(clip_grad_norm(p, norm, 0.0), 1.0);       // disabled
  EXPECT_EQ(clip_grad_norm(p, norm, 2 * norm), 1.0);  // below the maximum
  clip_grad_norm(p, norm, 1.0);
  EXPECT_NEAR(grad_norm(p), 1.0, 1e-5);
}

// run.precision: bf16: after an optimizer step the GEMMs read the updated weights.
TEST(AdamW, UpdateRefreshesTheBf16Copy) {
  Fixture a;
  ParameterSet& p = a.model->params();
  p.keep_bf16_copy();
  ops::fill(p.flat_grads(), 0.25f);
  const uint16_t before = p.matmul_weight(0).bf16()[0];
  a.optim->update(p, 0.05, 0);
  EXPECT_NE(p.matmul_weight(0).bf16()[0], before);
  for (size_t id = 0; id < p.all().size(); ++id) {
    const Tensor w = p.value(static_cast<int>(id)), w16 = p.matmul_weight(static_cast<int>(id));
    for (int64_t i = 0; i < w.numel(); ++i)
      ASSERT_EQ(w16.bf16()[i], f32_to_bf16(w.f32()[i])) << p.all()[id].name << "[" << i << "]";
  }
}

}  // namespace
}  // namespace rt
