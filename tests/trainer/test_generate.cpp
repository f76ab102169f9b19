// Sampling for `ringtrain generate`: greedy, the nucleus, and draws that follow the softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "trainer/infer_command.h"

namespace rt {
namespace {

TEST(Sampling, GreedyAndATinyNucleusTakeTheArgmax) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(sample_token(logits.data(), 4, 0.0, 1.0, 0.99), 1);
  EXPECT_EQ(sample_token(logits.data(), 4, 1.0, 1e-6, 0.99), 1);
}

TEST(Sampling, DrawsFollowTheSoftmaxWithinTheNucleus) {
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  // p = 0.1, 0.2, 0.3, 0.4. Over a grid of u, each token's share is its probability.
  std::vector<int> counts(4, 0);
  const int n = 10000;
  for (int i = 0; i < n; ++i) ++counts[sample_token(logits.data(), 4, 1.0, 1.0, (i + 0.5) / n)];
  for (int v = 0; v < 4; ++v) EXPECT_NEAR(counts[v] / double(n), (v + 1) / 10.0, 1e-3) << v;
  // top_p 0.6: the two most likely (0.4 + 0.3 >= 0.6) renormalised to 4/7 and 3/7.
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < n; ++i) ++counts[sample_token(logits.data(), 4, 1.0, 0.6, (i + 0.5) / n)];
  EXPECT_EQ(counts[0] + counts[1], 0);
  EXPECT_NEAR(counts[3] / double(n), 4.0 / 7.0, 1e-3);
  // A temperature of 2 flattens: p proportional to sqrt(1, 2, 3, 4).
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < n; ++i) ++counts[sample_token(logits.data(), 4, 2.0, 1.0, (i + 0.5) / n)];
  const double z = 1 + std::sqrt(2.0) + std::sqrt(3.0) + 2;
  EXPECT_NEAR(counts[0] / double(n), 1 / z, 1e-3);
}

}  // namespace
}  // namespace rt
