#include "core/check.h"

#include <cstring>

namespace rt {

void fail_internal(const char* file, int line, const std::string& message) {
  // Paths are printed from the project root, which is what a bug report needs.
  const char* root = nullptr;
  for (const char* dir :
       {"core/", "kernels/", "parallel/", "model/", "data/", "trainer/", "tests/", "bench/"}) {
    const char* hit = std::strstr(file, dir);
    if (hit && (!root || hit < root)) root = hit;
  }
  throw InternalError(cat(root ? root : file, ":", line, ": ", message));
}

}  // namespace rt
