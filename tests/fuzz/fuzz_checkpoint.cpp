// Checkpoint HDF5 files: a valid checkpoint of a small model, edited by the bytes (fuzz_input.h's
// script), then read as `inspect`, `--resume` and `eval` do: the header, the parameter list, a
// load into the model and its optimizer, the stored recipe. A first byte 'R' takes the rest as
// the file itself.
#include "model/model.h"
#include "tests/fuzz/fuzz_input.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe.h"

namespace {

using namespace rt;

ModelConfig small_model() {
  ModelConfig cfg;
  cfg.pattern = "*-";
  cfg.vocab_size = 20;
  cfg.d_model = 8;
  cfg.heads = 2;
  cfg.resolve();
  return cfg;
}

const std::vector<char>& base_checkpoint() {
  static const std::vector<char> bytes = [] {
    const std::string dir = fuzz::temp_path("ckpt");
    Model model(small_model());
    model.init_weights(3);
    AdamWOptimizer optim(model.params(), OptimSection{});
    CheckpointState s;
    s.step = 5;
    s.tokens_seen = 500;
    s.seed = 9;
    s.data_mode = "concat_chunk";
    s.recipe_yaml =
        recipe_to_yaml(parse_recipe("model: {pattern: \"*-\", vocab_size: 20, d_model: 8, heads: "
                                    "2}\ndata: {corpus: c.h5, seq_len: 16}\n"
                                    "train: {tokens_per_step: 64}\n",
                                    "base.yaml"));
    s.corpus_fingerprint = "fnv1a64:0";
    const std::string path = save_checkpoint(dir, s, model.params(), optim, 1);
    std::vector<char> b = fuzz::read_file(path);
    std::filesystem::remove_all(dir);
    return b;
  }();
  return bytes;
}

fuzz::Names names() {
  fuzz::Names n;
  Model model(small_model(), false);
  for (const Parameter& p : model.params().all()) {
    n.datasets.push_back("/params/" + p.name);
    n.datasets.push_back("/optim/" + p.name + "/m");
    n.datasets.push_back("/optim/" + p.name + "/v");
  }
  n.datasets.push_back("/params/layers.9.extra");
  n.datasets.push_back("/rng");
  n.groups = {"/", "/data", "/params", "/optim"};
  n.attributes = {"format", "version", "step",   "tokens_seen",
                  "dp",     "sp",      "recipe", "corpus_fingerprint",
                  "mode",   "seed"};
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Names kNames = names();
  fuzz::Bytes b(data, size);
  const std::string path = fuzz::temp_path("checkpoint.h5");
  fuzz::make_input_file(path, data, size, b, base_checkpoint(), kNames);
  fuzz::expect_only_user_errors("fuzz_checkpoint", [&] {
    std::vector<CheckpointParam> listed;
    read_checkpoint_state(path, &listed);
  });
  fuzz::expect_only_user_errors("fuzz_checkpoint", [&] {
    Model model(small_model());
    AdamWOptimizer optim(model.params(), OptimSection{});
    const CheckpointState s = load_checkpoint(path, model.params(), &optim);
    // eval builds the model its stored recipe describes.
    const Recipe r = parse_recipe(s.recipe_yaml, path + " (its recipe)");
    Model stored(r.model, /*allocate=*/false);
    (void)stored.params().numel();
  });
  std::remove(path.c_str());
  return 0;
}
