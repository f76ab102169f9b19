// Recipe YAML with --set overrides: the bytes up to the first NUL are the recipe, each further
// NUL-separated piece one "key.path=value" override. A recipe either loads or is a UserError,
// and a loaded recipe's YAML (as stored in checkpoints) loads back to the same YAML.
#include <cstdlib>

#include "tests/fuzz/fuzz_input.h"
#include "trainer/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rt;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t nul = text.find('\0');; nul = text.find('\0', start)) {
    pieces.push_back(
        text.substr(start, nul == std::string::npos ? std::string::npos : nul - start));
    if (nul == std::string::npos || pieces.size() > 16) break;
    start = nul + 1;
  }
  const std::vector<std::string> overrides(pieces.begin() + 1, pieces.end());
  Recipe recipe;
  bool loaded = false;
  fuzz::expect_only_user_errors("fuzz_recipe", [&] {
    recipe = parse_recipe(pieces[0], "fuzz.yaml", overrides);
    loaded = true;
  });
  if (!loaded) return 0;
  // Outside the catch: the emitted recipe must load again, whatever it holds.
  const std::string yaml = recipe_to_yaml(recipe);
  try {
    if (recipe_to_yaml(parse_recipe(yaml, "emitted.yaml")) != yaml) {
      std::fprintf(stderr, "fuzz_recipe: the emitted recipe does not read back the same:\n%s",
                   yaml.c_str());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_recipe: the emitted recipe does not load: %s\n%s", e.what(),
                 yaml.c_str());
    std::abort();
  }
  return 0;
}
