// Recipe loading: defaults, a full recipe, the exact round trip through recipe_to_yaml, and
// one error per rule, each a single line naming the key path and what would be valid.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "trainer/recipe.h"

namespace rt {
namespace {

const std::string kMinimal = "data:\n  corpus: corpus.h5\n";

const std::string kFull = R"(# every key, none at its default
run:
  name: full
  out_dir: /tmp/full-run
  seed: 7
model:
  pattern: "*-*-*-"
  vocab_size: 50304
  d_model: 384
  heads: 6
  kv_heads: 2
  head_dim: 64
  mlp_hidden: 1024
  rope_theta: 500000.0
  norm_eps: 1.0e-6
  tied_embeddings: no
  init_std: 0.01
data:
  corpus: train.h5
  val_corpus: "val: held out.h5"
  mode: concat_chunk
  seq_len: 512
parallel:
  sp: 4
optim:
  lr: 6e-4
  beta1: 0.8
  beta2: 0.99
  eps: 1e-10
  weight_decay: 0
  grad_clip: 0.5
schedule:
  kind: linear
  warmup_steps: 10
  min_lr_ratio: 0.0
train:
  steps: 200
  tokens_per_step: 16384
  micro_tokens: 2048
  recompute: true
checkpoint:
  every: 50
  keep_last: 2
log:
  every: 10
  peak_gflops: 989.5
eval:
  every: 100
  batches: 4
)";

// The message of the UserError the recipe raises; checks that it is one line.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_recipe(yaml, "r.yaml", overrides);
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  return "(no error)";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, needle, haystack)

// Found by fuzz_recipe: yaml-cpp 0.7 never returns on a ',' at a document's root. A recipe's
// root must be a mapping at column 0 (or a flow mapping), checked before yaml-cpp sees it.
TEST(Recipe, RootsYamlCppLoopsOnAreRefusedNotHung) {
  const std::pair<std::string, std::string> cases[] = {
      {",", "a document cannot start"},  // messages below: the part they share
      {",\n  a\n  b", ""},
      {"# c\n  ,x", ""},
      {"run: {name: a}\n---\n&x ,", ""},
      {"!,;\x02\x01\x97,;", ""},
      {"&a,", ""},
      {"run:\n%\xd6\x91\x9e\xf5"
       "3\n,he=1",
       ""},
      {"\"a\", b", ""},
      {"'a', b", ""},
      {"[a], b", ""},
      {"{a: 1},", "text after the document's root mapping"},
      {"\"a\n\tb\", c", ""},
      {" \"\"\"\",\"\"", ""},
      {"# c\n  steps: 3000\n , tokens: [[1", ""},
      {"!!ec2h{papatte\xff\xff:1\"},\n", ""},
      {"!!ec2h{evapapatte\xff\xff:\"},\n", ""},
      {"{\"data\": {corpus: c}}", ""}};
  for (const auto& [text, what] : cases) {
    try {
      parse_recipe(text, "c.yaml");
      FAIL() << text;
    } catch (const UserError& e) {
      EXPECT_TRUE(std::string(e.what()).find(": invalid YAML: ") != std::string::npos ||
                  std::string(e.what()).find("c.yaml: expected a mapping of sections") !=
                      std::string::npos)
          << e.what();
    }
  }
  // What recipes look like still loads: sections at column 0, quoted keys,
  // comments and document markers, comma-first style inside {}.
  EXPECT_EQ(parse_recipe("# a recipe\n---\ndata: {corpus: \"a,b\"}\n...\n", "c.yaml").data.corpus,
            "a,b");
  EXPECT_EQ(parse_recipe("data: {\"corpus\": 'x, y'}  # json inside\n", "c.yaml").data.corpus,
            "x, y");
  EXPECT_EQ(parse_recipe("\"data\": {corpus: c}", "c.yaml").data.corpus, "c");
  EXPECT_EQ(parse_recipe("data: {corpus: c\n  , seq_len: 64}\n", "c.yaml").data.seq_len, 64);
  EXPECT_EQ(parse_recipe("data:\n  corpus: c\n", "c.yaml").data.corpus, "c");
}

TEST(Recipe, DefaultsNeedOnlyTheCorpus) {
  const Recipe r = parse_recipe(kMinimal, "r.yaml");
  const Recipe defaults;
  EXPECT_EQ(r.origin, "r.yaml");
  EXPECT_EQ(r.data.corpus, "corpus.h5");
  EXPECT_EQ(r.run.name, defaults.run.name);
  EXPECT_EQ(r.run.out_dir, "runs/ringtrain");
  EXPECT_EQ(r.model.pattern, defaults.model.pattern);
  EXPECT_EQ(r.model.kv_heads, 4);
  EXPECT_EQ(r.model.head_dim, 64);
  EXPECT_EQ(r.model.mlp_hidden, 704);
  EXPECT_EQ(r.optim.lr, defaults.optim.lr);
  EXPECT_EQ(r.schedule.kind, ScheduleKind::Cosine);
  EXPECT_EQ(r.train.tokens_per_step, defaults.train.tokens_per_step);
  EXPECT_FALSE(r.train.recompute);
}

TEST(Recipe, EmptyDocumentStillNeedsTheCorpus) {
  EXPECT_EQ(error_of(""),
            "r.yaml: data.corpus: missing; expected the path of an HDF5 corpus made by "
            "'ringtrain data import'");
  EXPECT_EQ(parse_recipe("", "r.yaml", {"data.corpus=c.h5"}).data.corpus, "c.h5");
  // A section whose keys are all commented out is empty, not an error.
  EXPECT_EQ(parse_recipe("optim:\n" + kMinimal, "r.yaml").optim.lr, OptimSection{}.lr);
  EXPECT_EQ(parse_recipe("optim:\n" + kMinimal, "r.yaml", {"optim.lr=0.5"}).optim.lr, 0.5);
}

TEST(Recipe, FullRecipeParses) {
  const Recipe r = parse_recipe(kFull, "full.yaml");
  EXPECT_EQ(r.run.out_dir, "/tmp/full-run");
  EXPECT_EQ(r.run.seed, 7);
  EXPECT_EQ(r.model.pattern, "*-*-*-");
  EXPECT_EQ(r.model.kv_heads, 2);
  EXPECT_EQ(r.model.rope_theta, 500000.0);
  EXPECT_EQ(r.model.norm_eps, 1e-6);
  EXPECT_FALSE(r.model.tied_embeddings);
  EXPECT_EQ(r.data.val_corpus, "val: held out.h5");
  EXPECT_EQ(r.parallel.sp, 4);
  EXPECT_EQ(r.optim.lr, 6e-4);
  EXPECT_EQ(r.optim.weight_decay, 0.0);  // an integer is a valid float
  EXPECT_EQ(r.schedule.kind, ScheduleKind::Linear);
  EXPECT_EQ(r.train.micro_tokens, 2048);
  EXPECT_TRUE(r.train.recompute);
  EXPECT_EQ(r.log.peak_gflops, 989.5);
  EXPECT_EQ(r.eval.batches, 4);
}

TEST(Recipe, RoundTripIsExact) {
  const std::vector<std::string> odd = {
      "optim.lr=0.00030000000000000003",  // needs all 17 digits
      "optim.beta2=0.9990000000000001", "model.init_std=0.0333333333333333",
      "run.name='it''s \"quoted\": #1 \\ \t'",  // a tab: escaped on output
      "data.corpus=\"line\\nbreak.h5\""};
  for (const Recipe& r : {parse_recipe(kMinimal, "a.yaml"), parse_recipe(kFull, "a.yaml"),
                          parse_recipe(kMinimal, "a.yaml", odd)}) {
    const std::string yaml = recipe_to_yaml(r);
    const Recipe back = parse_recipe(yaml, "b.yaml");
    EXPECT_EQ(recipe_to_yaml(back), yaml);
    EXPECT_EQ(back.optim.lr, r.optim.lr);
    EXPECT_EQ(back.optim.beta2, r.optim.beta2);
    EXPECT_EQ(back.run.name, r.run.name);
    EXPECT_EQ(back.data.corpus, r.data.corpus);
    EXPECT_EQ(back.model.head_dim, r.model.head_dim);
  }
  // Nice values stay readable.
  const std::string yaml = recipe_to_yaml(parse_recipe(kMinimal, "a.yaml"));
  EXPECT_CONTAINS(yaml, "  lr: 0.0003\n");
  EXPECT_CONTAINS(yaml, "  rope_theta: 10000\n");
}

TEST(Recipe, YamlListsEveryKeyInOrder) {
  const std::vector<std::string> keys = recipe_keys();
  ASSERT_EQ(keys.size(), 70u);
  EXPECT_EQ(keys.front(), "run.name");
  EXPECT_EQ(keys.back(), "eval.seq_len");
  const std::string yaml = recipe_to_yaml(parse_recipe(kMinimal, "a.yaml"));
  size_t position = 0;
  for (const std::string& key : keys) {
    const std::string section = key.substr(0, key.find('.'));
    const std::string name = key.substr(key.find('.') + 1);
    const size_t at = yaml.find("\n  " + name + ":", yaml.find(section + ":\n"));
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GT(at, position) << key;
    position = at;
  }
}

TEST(Recipe, PrecisionAutoIsBf16OnCudaF32OnCpu) {
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml").run.precision, Precision::F32);
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"run.device=cuda"}).run.precision, Precision::BF16);
  EXPECT_EQ(
      parse_recipe(kMinimal, "r.yaml", {"run.device=cuda", "run.precision=f32"}).run.precision,
      Precision::F32);
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"run.precision=bf16"}).run.precision,
            Precision::BF16);
}

TEST(Recipe, UnknownKeySuggestsTheNearest) {
  EXPECT_EQ(error_of(kMinimal + "optim:\n  lr_max: 1\n"),
            "r.yaml: unknown key 'optim.lr_max' (did you mean 'optim.lr'?)");
  EXPECT_EQ(error_of(kMinimal + "modle:\n  d_model: 8\n"),
            "r.yaml: unknown section 'modle' (did you mean 'model'?)");
}

TEST(Recipe, UnknownKeyFarFromAnyListsTheValidOnes) {
  EXPECT_EQ(error_of(kMinimal + "optim:\n  momentum: 0.9\n"),
            "r.yaml: unknown key 'optim.momentum'; valid keys of optim: lr, beta1, beta2, eps, "
            "weight_decay, grad_clip");
  EXPECT_CONTAINS(error_of(kMinimal + "hyperparameters:\n  lr: 1\n"),
                  "unknown section 'hyperparameters'; valid sections: run, model, data, parallel, "
                  "optim, schedule, train, checkpoint, log, eval");
}

TEST(Recipe, WrongStructureIsRejected) {
  EXPECT_CONTAINS(error_of("- run\n- model\n"), "r.yaml: expected a mapping of sections");
  EXPECT_EQ(error_of(kMinimal + "optim: 3\n"),
            "r.yaml: optim: expected a mapping of optim keys, got '3'");
  EXPECT_CONTAINS(error_of(kMinimal + "optim:\n  lr: 1\n  lr: 2\n"), "optim.lr: given twice");
  EXPECT_CONTAINS(error_of(kMinimal + "---\n" + kMinimal), "2 YAML documents; expected one");
}

TEST(Recipe, WrongTypesNameTheKeyAndTheValue) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model:\n  d_model: abc\n", "r.yaml: model.d_model: expected an integer, got 'abc'"},
      {"model:\n  d_model: 1.5\n", "model.d_model: expected an integer, got '1.5'"},
      {"model:\n  d_model: true\n", "model.d_model: expected an integer, got 'true'"},
      {"model:\n  d_model: \"256\"\n",
       "model.d_model: expected an integer, got the quoted string '256'"},
      {"model:\n  d_model:\n", "model.d_model: expected an integer, got nothing (null)"},
      {"optim:\n  lr: fast\n", "optim.lr: expected a number, got 'fast'"},
      {"optim:\n  lr: [1]\n", "optim.lr: expected a number, got a list"},
      {"optim:\n  lr: {a: 1}\n", "optim.lr: expected a number, got a mapping"},
      {"optim:\n  lr: inf\n", "optim.lr: 'inf' is not finite; expected a finite number"},
      {"train:\n  recompute: 1\n", "train.recompute: expected true or false, got '1'"},
      {"run:\n  name: [a]\n", "run.name: expected a string, got a list"},
  };
  for (const auto& [yaml, message] : cases) EXPECT_CONTAINS(error_of(kMinimal + yaml), message);
}

TEST(Recipe, ScalarsFollowYaml) {
  const Recipe r = parse_recipe(kMinimal +
                                    "optim:\n  lr: 1\n  eps: 3E-4\n  grad_clip: +2\n"
                                    "train:\n  recompute: yes\nrun:\n  name: 123\n",
                                "r.yaml");
  EXPECT_EQ(r.optim.lr, 1.0);
  EXPECT_EQ(r.optim.eps, 3e-4);
  EXPECT_EQ(r.optim.grad_clip, 2.0);
  EXPECT_TRUE(r.train.recompute);
  EXPECT_EQ(r.run.name, "123");
}

TEST(Recipe, NegativeLearningRate) {
  EXPECT_EQ(error_of(kMinimal + "optim:\n  lr: -0.001\n"),
            "r.yaml: optim.lr: -0.001 is negative; expected a learning rate > 0");
}

TEST(Recipe, PatternSymbols) {
  const std::string valid =
      "valid symbols: '*' (attention), '-' (SwiGLU MLP), 'G' (GLA), 'M' (Mamba-2)";
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"model.pattern=M-G-*-"}).model.pattern, "M-G-*-");
  EXPECT_EQ(error_of(kMinimal, {"model.pattern=*-x-"}),
            "--set: model.pattern: unknown symbol 'x' at position 3; " + valid);
}

TEST(Recipe, HybridLayerShapes) {
  EXPECT_CONTAINS(error_of(kMinimal, {"model.pattern=G-", "model.gla_heads=3"}),
                  "model.gla_expand_k: d_model 256 x gla_expand_k 0.5 = 128 keys do not split into "
                  "3 GLA heads");
  EXPECT_CONTAINS(
      error_of(kMinimal, {"model.pattern=M-", "model.mamba_headdim=100"}),
      "model.mamba_headdim: 100 does not divide d_inner = mamba_expand x d_model = 512");
  EXPECT_CONTAINS(error_of(kMinimal, {"model.pattern=M-", "model.mamba_ngroups=3"}),
                  "model.mamba_ngroups: 3 does not divide the 8 Mamba-2 heads");
  // An explicit head count sets d_inner (NemotronH's 6 x 64 with d_model 256).
  const ModelConfig heads =
      parse_recipe(kMinimal, "r.yaml", {"model.pattern=M-", "model.mamba_num_heads=6"}).model;
  EXPECT_EQ(heads.mamba_d_inner(), 6 * 64);
  EXPECT_CONTAINS(
      error_of(kMinimal, {"model.pattern=M-", "model.mamba_num_heads=6", "model.mamba_ngroups=4"}),
      "model.mamba_ngroups: 4 does not divide the 6 Mamba-2 heads");
  EXPECT_CONTAINS(error_of(kMinimal, {"model.mamba_num_heads=-1"}),
                  "model.mamba_num_heads: -1 is negative; expected a head count >= 1, or 0");
  EXPECT_CONTAINS(
      error_of(kMinimal, {"model.mlp_activation=gelu"}),
      "model.mlp_activation: 'gelu' is not a known MLP activation; expected swiglu or relu2");
  EXPECT_CONTAINS(error_of(kMinimal, {"model.glr_chunk=8"}), "model.glr_chunk: 8 is too small");
  EXPECT_CONTAINS(
      error_of(kMinimal,
               {"model.pattern=M-", "data.seq_len=8", "train.tokens_per_step=8", "parallel.sp=4"}),
      "model.mamba_conv_width: 4 needs 3 rows before each zigzag unit, more than the 1 tokens");
  // The same shapes without a G or an M are not checked: those layers do not exist.
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"model.gla_heads=3"}).model.gla_heads, 3);
}

// Every value rule: the override that breaks it, and what the message must say.
TEST(Recipe, ValueChecksNameKeyValueAndRule) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"run.name=''", "run.name: empty; expected"},
      {"run.name=a/b", "run.name: 'a/b' is not a plain name; expected a name without '/'"},
      {"run.seed=-1", "run.seed: -1 is negative; expected a seed >= 0"},
      {"model.pattern=''", "model.pattern: empty; expected one symbol per layer"},
      {"model.vocab_size=1", "model.vocab_size: 1 is too small; expected 2 <= vocab_size"},
      {"model.vocab_size=2147483648", "model.vocab_size: 2147483648 is too large"},
      {"model.d_model=0", "model.d_model: 0 is too small; expected 1 <= d_model"},
      {"model.heads=0", "model.heads: 0 is too small; expected 1 <= heads"},
      {"model.kv_heads=-1", "model.kv_heads: -1 is negative; expected a divisor of model.heads"},
      {"model.kv_heads=3", "model.kv_heads: 3 does not divide model.heads 4; expected a divisor"},
      {"model.head_dim=-2", "model.head_dim: -2 is negative; expected an even size"},
      {"model.head_dim=33", "model.head_dim: 33 is odd; expected an even size (RoPE"},
      {"model.heads=3",
       "model.d_model: 256 is not divisible by model.heads 3; expected a multiple"},
      {"model.mlp_hidden=-1", "model.mlp_hidden: -1 is negative; expected a width"},
      {"model.rope_theta=0",
       "model.rope_theta: 0 is too small; expected a base >= 1 (10000 usual)"},
      {"model.rope_theta=0.5", "model.rope_theta: 0.5 is too small; expected a base >= 1"},
      {"model.norm_eps=-1e-5", "model.norm_eps: -1e-05 is negative; expected an epsilon > 0"},
      {"model.init_std=0", "model.init_std: 0 is too small; expected a standard deviation > 0"},
      {"data.corpus=''", "data.corpus: missing; expected the path of an HDF5 corpus"},
      {"data.mode=shuffle",
       "data.mode: 'shuffle' is not a known data mode; expected concat_chunk or decomposed"},
      {"data.seq_len=1", "data.seq_len: 1 is too small; expected at least 2 tokens"},
      {"parallel.sp=0", "parallel.sp: 0 is too small; expected a power of two"},
      {"parallel.sp=3", "parallel.sp: 3 is not a power of two; expected 1, 2, 4, 8"},
      {"parallel.timeout_s=0", "parallel.timeout_s: 0 is too small; expected seconds > 0"},
      {"parallel.sp=256", "parallel.sp: 256 is too large for data.seq_len 256; expected at most"},
      {"data.seq_len=255", "data.seq_len: 255 is not a multiple of 2 * parallel.sp = 2; expected"},
      {"optim.lr=0", "optim.lr: 0 is too small; expected a learning rate > 0"},
      {"optim.beta1=1", "optim.beta1: 1 is too large; expected 0 <= beta1 < 1"},
      {"optim.beta2=-0.1", "optim.beta2: -0.1 is negative; expected 0 <= beta2 < 1"},
      {"optim.eps=0", "optim.eps: 0 is too small; expected an epsilon > 0"},
      {"optim.weight_decay=-1", "optim.weight_decay: -1 is negative; expected a decay >= 0"},
      {"optim.grad_clip=-1", "optim.grad_clip: -1 is negative; expected a norm >= 0"},
      {"optim.lr=nan", "optim.lr: 'nan' is not finite; expected a finite number"},
      {"run.device=gpu",
       "run.device: 'gpu' is not a known device; expected cpu or cuda (did you mean cpu?)"},
      {"run.precision=fp16",
       "run.precision: 'fp16' is not a known precision; expected auto, f32 or bf16"},
      {"parallel.gpu_comm=gloo",
       "parallel.gpu_comm: 'gloo' is not a known GPU communicator; expected auto, nccl or staged"},
      {"schedule.kind=step",
       "schedule.kind: 'step' is not a known schedule; expected cosine, linear, constant or wsd"},
      {"schedule.kind=wsd", "schedule.decay_steps: 0 does not fit the wsd schedule; expected 1 to"},
      {"schedule.warmup_steps=-1",
       "schedule.warmup_steps: -1 is negative; expected a step count >= 0"},
      {"schedule.warmup_steps=101",
       "schedule.warmup_steps: 101 is more than train.steps 100; expected at most"},
      {"schedule.min_lr_ratio=1.5",
       "schedule.min_lr_ratio: 1.5 is too large; expected 0 <= min_lr_ratio <= 1"},
      {"train.steps=0", "train.steps: 0 is too small; expected at least 1 step"},
      {"train.tokens_per_step=128",
       "train.tokens_per_step: 128 is less than data.seq_len 256; expected at least one sequence"},
      {"train.tokens_per_step=1000",
       "train.tokens_per_step: 1000 is not a multiple of data.seq_len 256; expected a whole number "
       "of sequences"},
      {"train.micro_tokens=-1",
       "train.micro_tokens: -1 is negative; expected a multiple of data.seq_len"},
      {"train.micro_tokens=300",
       "train.micro_tokens: 300 is not a multiple of data.seq_len 256; expected"},
      {"checkpoint.every=-1", "checkpoint.every: -1 is negative; expected a step count >= 0"},
      {"checkpoint.keep_last=0", "checkpoint.keep_last: 0 is too small; expected at least 1"},
      {"log.every=0", "log.every: 0 is too small; expected a step count >= 1"},
      {"log.peak_gflops=-1", "log.peak_gflops: -1 is negative; expected GFLOP/s >= 0"},
      {"eval.every=-1", "eval.every: -1 is negative; expected a step count >= 0"},
      {"eval.batches=0", "eval.batches: 0 is too small; expected at least 1 batch"},
      {"eval.every=10",
       "data.val_corpus: missing while eval.every is 10; expected the path of a held-out"},
  };
  for (const auto& [set, message] : cases) {
    SCOPED_TRACE(set);
    EXPECT_CONTAINS(error_of(kMinimal, {set}), message);
  }
  // Derived values get the same checks, and say they were derived.
  EXPECT_CONTAINS(error_of(kMinimal, {"model.d_model=66", "model.heads=2"}),
                  "model.head_dim: 33 (d_model / heads) is odd");
  // The checks pass for the values just beside the limits.
  parse_recipe(kMinimal, "r.yaml",
               {"optim.beta1=0", "optim.beta2=0.9999999999999999", "schedule.warmup_steps=100",
                "schedule.min_lr_ratio=1", "parallel.sp=128", "train.tokens_per_step=256",
                "model.kv_heads=1", "model.head_dim=2", "eval.every=5", "data.val_corpus=v.h5"});
}

TEST(Recipe, YamlSyntaxErrorHasLineAndColumn) {
  const std::string message = error_of("data:\n  corpus: c.h5\nmodel:\n  heads: [4\n");
  EXPECT_EQ(message.rfind("r.yaml:", 0), 0u) << message;
  EXPECT_CONTAINS(message, "invalid YAML: ");
  EXPECT_CONTAINS(error_of("data:\n  corpus: c.h5\n bad: 1\n"),
                  "r.yaml:3:2: invalid YAML: end of map not found");
}

TEST(Recipe, OverridesAreAppliedInOrderAndTypeChecked) {
  const Recipe r = parse_recipe(kMinimal + "optim:\n  lr: 0.001\n", "r.yaml",
                                {"optim.lr=0.002", "train.steps=5", "train.steps=7",
                                 "model.pattern=\"*-\"", "run.name=from cli"});
  EXPECT_EQ(r.optim.lr, 0.002);
  EXPECT_EQ(r.train.steps, 7);
  EXPECT_EQ(r.model.pattern, "*-");
  EXPECT_EQ(r.run.out_dir, "runs/from cli");
  EXPECT_EQ(error_of(kMinimal, {"model.d_model=abc"}),
            "--set: model.d_model: expected an integer, got 'abc'");
  EXPECT_EQ(error_of(kMinimal, {"optim.lr=-0.001"}),
            "--set: optim.lr: -0.001 is negative; expected a learning rate > 0");
  EXPECT_EQ(error_of(kMinimal, {"abc"}), "--set 'abc': expected key.path=value");
  // A value that is no YAML scalar is taken as its text, then type-checked like any other.
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"model.pattern=*-*-*-"}).model.pattern, "*-*-*-");
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml", {"data.corpus=a: b.h5"}).data.corpus, "a: b.h5");
  EXPECT_EQ(error_of(kMinimal, {"optim.lr=[1"}), "--set: optim.lr: expected a number, got '[1'");
}

TEST(Recipe, OverrideOfUnknownKey) {
  EXPECT_EQ(error_of(kMinimal, {"optim.lr_max=1"}),
            "--set: unknown key 'optim.lr_max' (did you mean 'optim.lr'?)");
  EXPECT_EQ(error_of(kMinimal, {"modle.d_model=8"}),
            "--set: unknown key 'modle.d_model' (did you mean 'model.d_model'?)");
  EXPECT_CONTAINS(error_of(kMinimal, {"optim.momentum=0.9"}), "valid keys of optim: lr, beta1");
}

TEST(Recipe, MessagesStayOnOneLine) {
  // error_of checks every message for '\n'; these put one in the offending value.
  EXPECT_CONTAINS(error_of(kMinimal, {"run.name=\"a\\n/b\""}), "'a\\x0a/b'");
  EXPECT_CONTAINS(error_of(kMinimal + "\"op\\ntim\":\n  lr: 1\n"), "unknown section 'op\\x0atim'");
}

TEST(Recipe, LoadReadsTheFile) {
  const std::string path = ::testing::TempDir() + "ringtrain_test_recipe.yaml";
  std::ofstream(path) << kMinimal;
  const Recipe r = load_recipe(path, {"train.steps=3"});
  EXPECT_EQ(r.origin, path);
  EXPECT_EQ(r.train.steps, 3);
  std::remove(path.c_str());

  try {
    load_recipe(path);
    FAIL() << "no error for a missing file";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot read recipe: No such file or directory");
  }
  try {
    load_recipe(::testing::TempDir());
    FAIL() << "no error for a directory";
  } catch (const UserError& e) {
    EXPECT_CONTAINS(std::string(e.what()), "cannot read recipe: Is a directory");
  }
}

}  // namespace
}  // namespace rt
