// One JSONL line of `data import`: the "text" string or an error message, never a crash, and
// an error is one line.
#include <cstdlib>

#include "data/jsonl.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  std::string error;
  const std::optional<std::string> text = rt::jsonl_text_field(line, error);
  if (!text && (error.empty() || error.find('\n') != std::string::npos)) {
    std::fprintf(stderr, "fuzz_jsonl: error message '%s'\n", error.c_str());
    std::abort();
  }
  return 0;
}
