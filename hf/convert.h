// `ringtrain convert`: Hugging Face model directories <-> ringtrain checkpoints.
//   convert HF_DIR OUT.h5       config.json + model.safetensors (or the shards of
//                               model.safetensors.index.json) -> a weights-only checkpoint
//                               whose recipe holds the model section (ringtrain inspect shows it)
//   convert CKPT.h5 OUT_DIR     any ringtrain checkpoint -> config.json + model.safetensors
//                               (shards of at most shard_bytes and their index when larger)
// Names and keys: hf/hf_model.h. Tensors are read as F32/F16/BF16/F64 and kept in f32.
#pragma once

#include <cstdint>
#include <string>

#include "hf/safetensors.h"

namespace rt {

struct ConvertOptions {
  std::string from, to;
  StDType dtype = StDType::F32;       // export: F32 or BF16
  uint64_t shard_bytes = 5ull << 30;  // export: the largest file before sharding
};

int run_convert(const ConvertOptions& options);

}  // namespace rt
