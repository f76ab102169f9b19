// HDF5 checkpoints (docs/DESIGN.md §9), readable with h5py:
//   /params/<name>            f32, the parameter's shape
//   /optim/<name>/m, /v       f32, AdamW moments, same shape (absent: weights only)
//   /rng                      u64 [1]: the run seed (all randomness is counter-based on it)
//   /data                     group; attributes mode, seed, step: the data cursor
//   attributes                format="ringtrain-checkpoint", version, step, tokens_seen, dp,
//                             sp, recipe (resolved YAML), corpus_fingerprint
// A checkpoint is written to step-NNNNNNN.h5.tmp, fsynced, renamed; `latest` (a text file
// naming it) is replaced the same way; then, of the checkpoints of earlier steps, all but the
// newest keep_last - 1 are deleted (the one just written is never pruned, and checkpoints of
// later steps, left by a run resumed from an older checkpoint, are not touched). A write
// that fails at any point leaves the previous checkpoint and `latest` as they were.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/params.h"
#include "trainer/optimizer.h"

namespace rt {

inline constexpr const char* kCheckpointFormat = "ringtrain-checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;

struct CheckpointState {
  int64_t step = 0;         // completed optimizer steps
  int64_t tokens_seen = 0;  // global tokens trained on
  int64_t dp = 1, sp = 1;
  int64_t seed = 0;
  std::string data_mode;
  std::string recipe_yaml;
  std::string corpus_fingerprint;
};

struct CheckpointParam {
  std::string name;
  std::vector<uint64_t> shape;
};

// Called after each dataset is written with its name; a test throws from it to simulate a
// failure midway (disk full, node lost).
using CheckpointFaultHook = std::function<void(const std::string& dataset)>;

// Writes the checkpoint of `state.step` into dir (created if needed) and returns its path.
// Throws RunError (exit code 1) naming the file and the cause; nothing good is replaced then.
std::string save_checkpoint(const std::string& dir, const CheckpointState& state,
                            const ParameterSet& params, const AdamWOptimizer& optim,
                            int64_t keep_last, const CheckpointFaultHook& fault = {});

// A checkpoint of the weights alone at `path` (no AdamW moments, no `latest`): what `ringtrain
// convert` writes. A run starts from it with checkpoint.init_from; --resume refuses it.
void save_weights(const std::string& path, const CheckpointState& state,
                  const ParameterSet& params);

// The checkpoint `latest` names in dir, or "" when dir has no `latest`. A `latest` that names
// a missing file is a UserError (the run directory is damaged: starting over would be wrong).
std::string latest_checkpoint(const std::string& dir);
// Every step-NNNNNNN.h5 in dir (none when dir does not exist), oldest step first.
std::vector<std::string> checkpoint_files(const std::string& dir);

// Whether the checkpoint at path holds exactly params' names and shapes (read nothing else): a
// UserError naming the first difference and `key`, the recipe key that named the file.
void check_weights_match(const std::string& path, const ParameterSet& params,
                         const std::string& key);

// Header and parameter list of a checkpoint (for `ringtrain inspect`). UserError when the file
// is not a readable ringtrain checkpoint.
CheckpointState read_checkpoint_state(const std::string& path,
                                      std::vector<CheckpointParam>* params = nullptr);

// Loads parameters (and the moments, when optim is given) into params/optim, which must have
// exactly the checkpoint's parameter names and shapes (else a UserError naming the first
// mismatch). Returns the header.
CheckpointState load_checkpoint(const std::string& path, ParameterSet& params,
                                AdamWOptimizer* optim);

}  // namespace rt
