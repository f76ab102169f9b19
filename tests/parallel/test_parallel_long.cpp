// State passing keeps the recurrence exact at long T: the GLA and Mamba-2 layers' parameter
// gradients on one 64K-token sequence cut over all the ranks (sp = world), summed over the
// group, against the float64 layer reference: the parameters behind the decay (A_log, dt_bias,
// GLA's gate bias) within 1e-4, every other one within f32 rounding (2e-6).
#include <gtest/gtest.h>

#include "tests/model/layer_accuracy.h"
#include "tests/testing.h"

namespace rt {
namespace {

void check(char symbol) {
  auto world = mpi_world();
  ModelConfig cfg = testing::tiny_model_config(std::string(1, symbol));
  cfg.glr_chunk = 64;
  const int64_t T = 65536;
  for (const testing::GradientError& e :
       testing::layer_gradient_errors(symbol, cfg, T, world.get(), 5))
    EXPECT_LT(e.error, testing::long_sequence_tolerance(e.name))
        << symbol << " " << e.name << " over sp = " << world->size();
}

TEST(ParallelLong, Mamba2At64K) { check('M'); }
TEST(ParallelLong, GlaAt64K) { check('G'); }

}  // namespace
}  // namespace rt
