// `ringtrain eval CKPT --task passkey|mqar --lengths 1k,4k,...`: retrieval accuracy of a
// checkpoint on fresh synthetic documents (data/synth.h), teacher forced: the most likely next
// token at every answer position must be the answer.
// `ringtrain eval CKPT --task perplexity --corpus CORPUS.h5 --lengths 1k,4k,...`: loss per token
// and perplexity on the user's corpus, by sequence length.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "trainer/checkpoint.h"

namespace rt {

struct EvalOptions {
  std::string checkpoint;
  std::string task = "passkey";
  std::vector<int64_t> lengths;
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};  // passkey only
  int64_t samples = 10;                                      // documents per cell
  uint64_t seed = 20261126;
  std::string corpus;     // perplexity: the corpus to measure on
  std::string tokenizer;  // passkey, mqar: documents in a SentencePiece model's tokens; "" = bytes
  std::string out_json;   // "" = no file
};

int run_eval(const EvalOptions& options);

// The model of a checkpoint, on the host, after a check that it fits the host's memory; state
// receives the checkpoint's header. For inference: the AdamW state is not read.
std::unique_ptr<Model> load_model(const std::string& checkpoint, CheckpointState& state);
// A model of cfg on the host, allocated (values and gradients, f32) once a check found room for
// them in the host's memory: a UserError naming `what` otherwise.
std::unique_ptr<Model> allocate_model(const ModelConfig& cfg, const std::string& what);

// "1k" = 1024, "4k", "1m" = 2^20, or a plain number; UserError otherwise.
int64_t parse_length(const std::string& text, const std::string& what);

}  // namespace rt
