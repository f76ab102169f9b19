// Inference on one rank, from a checkpoint:
//   `ringtrain logits CKPT --tokens 1,2,3 [--out LOGITS.npy]`: the next-token logits of every
//   position of a token sequence (f32 [T, vocab], NumPy .npy), to check a converted model
//   against the framework it came from; without --out, the argmax at each position.
//   `ringtrain generate CKPT --prompt TEXT | --tokens 1,2,3 [--max-new N] [--temperature T]
//   [--top-p P] [--seed S] [--tokenizer SPM.model]`: text from a checkpoint, one token at a
//   time with a K/V cache (attention and MLP layers; GLA and Mamba-2 cannot yet): greedy at
//   temperature 0, else sampled from the softmax at that temperature within the top-p nucleus.
//   A --prompt is encoded with --tokenizer (or bytes, for a byte-vocabulary model) and the
//   generation stops at its <eos>; --tokens generate max-new tokens whatever they are.
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

struct GenerateOptions {
  std::string checkpoint;
  std::string prompt;           // text, or
  std::vector<int32_t> tokens;  // token ids
  std::string tokenizer;        // a SentencePiece model; "" = bytes
  int64_t max_new = 64;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 1;
};

int run_generate(const GenerateOptions& options);

// The next token from logits [V]: the argmax at temperature 0, else a draw (u in [0, 1)) from
// softmax(logits / temperature) restricted to the smallest set of most likely tokens whose
// probability reaches top_p.
int32_t sample_token(const float* logits, int64_t V, double temperature, double top_p, double u);

// Writes a little-endian f32 NumPy array (.npy version 1.0) through path.tmp and a rename.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace rt
