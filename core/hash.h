// The two hashes ringtrain uses: splitmix64 (counter-based randomness: initialisation, data
// order) and FNV-1a 64 (names and corpus fingerprints). Stable across platforms and versions:
// checkpoints and corpora depend on them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rt {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline constexpr uint64_t kFnv1aSeed = 14695981039346656037ull;  // the FNV-1a 64 offset basis

inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnv1aSeed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace rt
