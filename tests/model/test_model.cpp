// The model stack: gradients against finite differences of the loss, recompute against no
// recompute, sequences that do not see each other, and the activation-memory estimate
// against the arena's measured peak.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "tests/testing.h"

namespace rt {
namespace {

using testing::random_ints;

ModelConfig tiny_config(const std::string& pattern, bool tied) {
  return testing::tiny_model_config(pattern, tied);
}

// n_seqs sequences of seq_len tokens; targets are the next token, the last one ignored.
struct TestBatch {
  TestBatch(int64_t n_seqs, int64_t seq_len, int64_t vocab, uint64_t seed)
      : layout(SequenceLayout::zigzag(seq_len, 1, 0)) {
    auto toks = random_ints(n_seqs * seq_len + 1, 0, static_cast<int32_t>(vocab), seed);
    std::vector<int32_t> in(toks.begin(), toks.end() - 1), tg(toks.begin() + 1, toks.end()), pos;
    for (int64_t i = 0; i < n_seqs * seq_len; ++i) pos.push_back(static_cast<int32_t>(i % seq_len));
    tg[seq_len / 2] = -1;
    batch.tokens = testing::int_tensor(in);
    batch.targets = testing::int_tensor(tg);
    batch.positions = testing::int_tensor(pos);
    batch.seq = {&layout, n_seqs, nullptr};
  }
  SequenceLayout layout;
  Batch batch;
};

double loss_at(Model& m, const Batch& b, Arena& arena) { return m.forward_loss(b, arena); }

// For each parameter tensor: the derivative of the loss along a direction inside that tensor,
// by central differences, against the gradient's projection on it.
void check_gradients(const ModelConfig& cfg, bool recompute) {
  Model m(cfg);
  m.init_weights(7);
  for (const Parameter& p : m.params().all())
    if (p.name.ends_with(".bq") || p.name.ends_with(".bk") || p.name.ends_with(".bv"))
      // Biases start at 0: a value away from it tests their effect on the rotation too.
      ops::accumulate(m.params().value(m.params().find(p.name)),
                      testing::random_tensor({p.shape.numel()}, 5));
  TestBatch tb(2, 16, m.config().vocab_size, 11);
  Arena arena;
  ops::fill(m.params().flat_grads(), 0.0f);
  const double loss = m.forward_backward(tb.batch, 1.0f, recompute, arena);
  EXPECT_NEAR(loss, loss_at(m, tb.batch, arena), 1e-9 * std::abs(loss));

  for (size_t id = 0; id < m.params().all().size(); ++id) {
    const Parameter& p = m.params().all()[id];
    Tensor w = m.params().value(static_cast<int>(id)), g = m.params().grad(static_cast<int>(id));
    const int64_t n = w.numel();
    // Half along the gradient (strong signal), half random (catches a gradient that is wrong
    // in directions orthogonal to itself).
    Tensor r = testing::random_tensor({n}, 100 + id);
    const double gnorm = std::sqrt(ops::sum_squares(g)), rnorm = std::sqrt(ops::sum_squares(r));
    ASSERT_GT(gnorm, 0.0) << p.name << " has a zero gradient";
    std::vector<double> u(n);
    double unorm = 0;
    for (int64_t i = 0; i < n; ++i) {
      u[i] = g.f32()[i] / gnorm + r.f32()[i] / rnorm;
      unorm += u[i] * u[i];
    }
    unorm = std::sqrt(unorm);
    double analytic = 0;
    for (int64_t i = 0; i < n; ++i) {
      u[i] /= unorm;
      analytic += g.f32()[i] * u[i];
    }
    std::vector<float> w0(w.f32(), w.f32() + n);
    auto shifted = [&](double s) {
      for (int64_t i = 0; i < n; ++i) w.f32()[i] = static_cast<float>(w0[i] + s * u[i]);
      return loss_at(m, tb.batch, arena);
    };
    // Central differences at eps and eps/2 combined (Richardson) cancel the eps^2 term. Which
    // eps is accurate depends on the direction: a strongly curved one (stacked recurrent
    // layers at std 0.3) wants a small eps, a small gradient a large one (f32 rounding of the
    // loss is absolute). The check takes the best of three: a wrong analytic gradient
    // disagrees with the difference at every eps (a 1% error in one backward term fails it).
    auto central = [&](double h) { return (shifted(h) - shifted(-h)) / (2 * h); };
    double fd = 0, best = HUGE_VAL;
    for (double eps : {4e-2, 1e-2, 2.5e-3}) {
      const double estimate = (4 * central(eps / 2) - central(eps)) / 3;
      if (std::abs(estimate - analytic) < best) {
        best = std::abs(estimate - analytic);
        fd = estimate;
      }
    }
    std::copy(w0.begin(), w0.end(), w.f32());
    EXPECT_NEAR(fd, analytic, 2e-3 * std::abs(analytic)) << p.name;
  }
}

void check_gradients(const std::string& pattern, bool tied, bool recompute,
                     bool attention_bias = false) {
  ModelConfig cfg = tiny_config(pattern, tied);
  cfg.attention_bias = attention_bias;
  check_gradients(cfg, recompute);
}

TEST(Model, GradientsMatchFiniteDifferencesTied) { check_gradients("*-*-", true, false); }
TEST(Model, GradientsMatchFiniteDifferencesUntied) { check_gradients("-**-", false, false); }
TEST(Model, GradientsMatchFiniteDifferencesRecompute) { check_gradients("*-", true, true); }
TEST(Model, AttentionBiasGradientsMatchFiniteDifferences) {
  check_gradients("*-", false, false, /*attention_bias=*/true);
}
// NemotronH's forms: the squared-ReLU MLP and attention without RoPE, beside Mamba-2.
TEST(Model, NemotronHLayersGradientsMatchFiniteDifferences) {
  ModelConfig cfg = tiny_config("M*-", false);
  cfg.mlp_activation = MlpActivation::Relu2;
  cfg.rope = false;
  check_gradients(cfg, false);
}

// Generation's cached path (attention's K/V cache, the recurrent and conv states of G and M),
// a prompt at once and then one token at a time, against the whole-sequence forward.
double worst_decoding_error(const ModelConfig& cfg, int64_t prompt) {
  Model m(cfg);
  m.init_weights(3);
  const int64_t T = 40, V = cfg.vocab_size;
  TestBatch tb(1, T, V, 12);
  Arena arena;
  Tensor full = Tensor::empty({T, V}), row = Tensor::empty({V});
  m.logits(tb.batch, arena, full);
  auto states = m.decode_states(T);
  double worst = 0;
  const int32_t* tok = tb.batch.tokens.i32();
  m.decode_step(std::vector<int32_t>(tok, tok + prompt), 0, T, states, arena, row);
  for (int64_t t = prompt - 1; t < T; ++t) {
    if (t >= prompt) m.decode_step({tok[t]}, t, T, states, arena, row);
    double err = 0, scale = 0;
    for (int64_t v = 0; v < V; ++v) {
      err = std::max(err, std::abs(double(row.f32()[v]) - full.f32()[t * V + v]));
      scale = std::max(scale, std::abs(double(full.f32()[t * V + v])));
    }
    worst = std::max(worst, err / scale);
  }
  return worst;
}

TEST(Model, DecodingTokenByTokenGivesTheForwardsLogits) {
  ModelConfig cfg = tiny_config("*-*-", false);
  cfg.attention_bias = true;
  cfg.rope_scaling = RopeKind::Yarn;
  cfg.rope_factor = 4;
  cfg.rope_original_context = 8;
  EXPECT_LT(worst_decoding_error(cfg, 7), 1e-5);
}

// Chunks of 16: a prompt of 7 ends inside the first, one of 21 crosses into the second, and
// the tokens after it cross the next boundaries one at a time.
TEST(Model, DecodingRecurrentLayersGivesTheForwardsLogits) {
  for (const char* pattern : {"M-", "G-", "MG*-"})
    for (int64_t prompt : {1, 7, 21}) {
      EXPECT_LT(worst_decoding_error(tiny_config(pattern, true), prompt), 1e-5)
          << pattern << " prompt " << prompt;
    }
  ModelConfig nemotron = tiny_config("M*-", false);
  nemotron.mlp_activation = MlpActivation::Relu2;
  nemotron.rope = false;
  EXPECT_LT(worst_decoding_error(nemotron, 21), 1e-5);
}

TEST(Model, GlaGradientsMatchFiniteDifferences) { check_gradients("G-", true, false); }
TEST(Model, Mamba2GradientsMatchFiniteDifferences) { check_gradients("M-", true, false); }
TEST(Model, StackedRecurrentGradientsMatchFiniteDifferences) {
  check_gradients("MMGG", true, false);
}
TEST(Model, HybridGradientsMatchFiniteDifferencesRecompute) {
  check_gradients("MG*-", false, true);
}

TEST(Model, RecomputeGivesBitIdenticalGradients) {
  Model m(tiny_config("*-M-G-", true));
  m.init_weights(3);
  TestBatch tb(3, 32, m.config().vocab_size, 5);
  Arena arena;
  const Tensor g = m.params().flat_grads();
  ops::fill(g, 0.0f);
  const double a = m.forward_backward(tb.batch, 0.5f, false, arena);
  std::vector<float> plain(g.f32(), g.f32() + g.numel());
  ops::fill(g, 0.0f);
  const double b = m.forward_backward(tb.batch, 0.5f, true, arena);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), g.f32()));
}

// Every linear weight's bf16 copy holds the rounded f32 value.
void expect_bf16_copy_current(const ParameterSet& p) {
  for (size_t id = 0; id < p.all().size(); ++id) {
    const Tensor w = p.value(static_cast<int>(id)), w16 = p.matmul_weight(static_cast<int>(id));
    ASSERT_EQ(w16.dtype(), DType::BF16) << p.all()[id].name;
    for (int64_t i = 0; i < w.numel(); ++i)
      ASSERT_EQ(w16.bf16()[i], f32_to_bf16(w.f32()[i])) << p.all()[id].name << "[" << i << "]";
  }
}

// run.precision: bf16 on the CPU: the linear layers read the bf16 copy and the residual stream
// is bf16 (the loss moves by bf16's rounding, not more), the gradients stay close to the f32
// ones, and a refresh follows the values.
TEST(Model, Bf16PrecisionTracksF32) {
  Model m(tiny_config("*-M-G-", true));
  m.init_weights(4);
  TestBatch tb(2, 32, m.config().vocab_size, 9);
  Arena arena;
  const Tensor g = m.params().flat_grads();
  ops::fill(g, 0.0f);
  const double loss32 = m.forward_backward(tb.batch, 1.0f, false, arena);
  const std::vector<double> grad32(g.f32(), g.f32() + g.numel());

  m.params().keep_bf16_copy();
  expect_bf16_copy_current(m.params());
  ops::fill(g, 0.0f);
  const double loss16 = m.forward_backward(tb.batch, 1.0f, false, arena);
  EXPECT_NE(loss16, loss32);
  EXPECT_NEAR(loss16, loss32, 1e-2 * loss32);
  // The gradient points the same way. Its relative RMS difference to the f32 one is 1 % at the
  // last layer and 5-10 % at the first (the rounding of ~20 GEMMs' operands on the way back, at
  // this tiny width), so the check is the angle: cos > 0.99 (it is 0.997; halving the weight
  // gradients of the bf16 path gives 0.94).
  double dot = 0, n16 = 0, n32 = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    dot += g.f32()[i] * grad32[i];
    n16 += static_cast<double>(g.f32()[i]) * g.f32()[i];
    n32 += grad32[i] * grad32[i];
  }
  EXPECT_GT(dot / std::sqrt(n16 * n32), 0.99);
  // The loss-only forward computes as the training forward does, and recompute reads the same
  // bf16 stream: the same bits.
  EXPECT_NEAR(loss_at(m, tb.batch, arena), loss16, 1e-9 * loss16);
  const std::vector<float> plain(g.f32(), g.f32() + g.numel());
  ops::fill(g, 0.0f);
  EXPECT_EQ(m.forward_backward(tb.batch, 1.0f, true, arena), loss16);
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), g.f32()));

  ops::scale(m.params().flat_values(), 0.5f);
  m.params().refresh_bf16_copy();
  expect_bf16_copy_current(m.params());
}

TEST(Model, MicroBatchesAccumulateToTheFullBatchGradient) {
  Model m(tiny_config("*-*-", true));
  m.init_weights(6);
  TestBatch full(4, 32, m.config().vocab_size, 12);
  Arena arena;
  const Tensor g = m.params().flat_grads();
  ops::fill(g, 0.0f);
  const double whole = m.forward_backward(full.batch, 0.25f, false, arena);
  std::vector<double> want(g.f32(), g.f32() + g.numel());
  ops::fill(g, 0.0f);
  double parts = 0;
  for (int64_t half = 0; half < 2; ++half) {
    Batch b = full.batch;
    b.tokens = b.tokens.rows(half * 64, 64);
    b.targets = b.targets.rows(half * 64, 64);
    b.positions = b.positions.rows(half * 64, 64);
    b.seq.n_seqs = 2;
    parts += m.forward_backward(b, 0.25f, false, arena);
  }
  // Not bit-equal: OpenBLAS blocks a 64-row GEMM differently from a 128-row one, so f32 sums
  // run in another order. The bound is the f32 one of docs/DESIGN.md §10.
  EXPECT_NEAR(parts, whole, 1e-6 * whole);
  EXPECT_LT(testing::rel_rms_error(g, want), 1e-5);
}

TEST(Model, SequencesDoNotSeeEachOther) {
  Model m(tiny_config("*-GM", true));
  m.init_weights(4);
  TestBatch tb(2, 16, m.config().vocab_size, 6);
  Arena arena;
  Tensor before = Tensor::empty({32}), after = Tensor::empty({32});
  m.forward_loss(tb.batch, arena, before);
  for (int i = 16; i < 32; ++i) tb.batch.tokens.i32()[i] = (tb.batch.tokens.i32()[i] + 5) % 23;
  m.forward_loss(tb.batch, arena, after);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(before.f32()[i], after.f32()[i]) << i;
  int changed = 0;
  for (int i = 16; i < 32; ++i) changed += before.f32()[i] != after.f32()[i];
  EXPECT_GT(changed, 8);
}

TEST(Model, CausalTokensDoNotSeeTheFuture) {
  Model m(tiny_config("*-MG", true));
  m.init_weights(5);
  TestBatch tb(1, 32, m.config().vocab_size, 8);
  Arena arena;
  Tensor before = Tensor::empty({32}), after = Tensor::empty({32});
  m.forward_loss(tb.batch, arena, before);
  tb.batch.tokens.i32()[20] = (tb.batch.tokens.i32()[20] + 1) % 23;
  m.forward_loss(tb.batch, arena, after);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(before.f32()[i], after.f32()[i]) << i;
  EXPECT_NE(before.f32()[20], after.f32()[20]);
}

TEST(Model, ActivationEstimateMatchesTheArenaPeak) {
  for (bool bf16 : {false, true})
    for (bool recompute : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "bf16 " << bf16 << " recompute " << recompute);
      Model m(tiny_config("*-M-G-", true));
      if (bf16) m.params().keep_bf16_copy();  // the residual stream in bf16
      m.init_weights(1);
      TestBatch tb(4, 64, m.config().vocab_size, 9);
      Arena arena;
      m.forward_backward(tb.batch, 1.0f, recompute, arena);
      const double measured = static_cast<double>(arena.peak());
      const double estimate = static_cast<double>(m.activation_bytes(4, tb.layout, recompute));
      // The arena rounds each allocation up to 64 bytes; nothing else may differ.
      EXPECT_LE(estimate, measured);
      EXPECT_GE(estimate, measured - 64.0 * 64);
    }
  const SequenceLayout layout = SequenceLayout::zigzag(256, 1, 0);
  EXPECT_LT(Model(tiny_config("*-*-*-*-", true)).activation_bytes(16, layout, true),
            Model(tiny_config("*-*-*-*-", true)).activation_bytes(16, layout, false) / 2);
}

TEST(Model, InitIsAFunctionOfTheSeed) {
  Model a(tiny_config("*-", true)), b(tiny_config("*-", true)), c(tiny_config("*-", true));
  a.init_weights(9);
  b.init_weights(9);
  c.init_weights(10);
  const Tensor pa = a.params().flat_values(), pb = b.params().flat_values(),
               pc = c.params().flat_values();
  EXPECT_TRUE(std::equal(pa.f32(), pa.f32() + pa.numel(), pb.f32()));
  EXPECT_FALSE(std::equal(pa.f32(), pa.f32() + pa.numel(), pc.f32()));
  // Residual projections are scaled down by 1/sqrt(layers).
  const double wq = std::sqrt(
      ops::sum_squares(a.params().value(a.params().find("layers.0.attn.wq"))) / (32.0 * 32));
  const double wo = std::sqrt(
      ops::sum_squares(a.params().value(a.params().find("layers.0.attn.wo"))) / (32.0 * 32));
  EXPECT_NEAR(wq, 0.3, 0.03);
  EXPECT_NEAR(wo, 0.3 / std::sqrt(2.0), 0.03);
}

}  // namespace
}  // namespace rt
