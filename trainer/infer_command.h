// Inference on one rank, from a checkpoint:
//   `ringtrain logits CKPT --tokens 1,2,3 [--out LOGITS.npy]`: the next-token logits of every
//   position of a token sequence (f32 [T, vocab], NumPy .npy), to check a converted model
//   against the framework it came from; without --out, the argmax at each position.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rt {

struct LogitsOptions {
  std::string checkpoint;
  std::vector<int32_t> tokens;
  std::string out_npy;  // "" = print the argmax per position
};

int run_logits(const LogitsOptions& options);

// Writes a little-endian f32 NumPy array (.npy version 1.0) through path.tmp and a rename.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace rt
