// Recipe: the YAML file that describes a run, as a typed and validated struct.
// Loading is the only place user configuration is checked: every later stage may trust it.
// A bad recipe raises rt::UserError with one line naming the key path, the value, and what
// would be valid (e.g. "recipe.yaml: optim.lr: -0.001 is negative; expected a value > 0").
//
// Sections and keys (defaults in the struct initialisers below):
//   run:        name, out_dir, seed, device, precision, memory_check
//   model:      see model/config.h
//   data:       corpus, val_corpus, mode, seq_len, curriculum, curriculum_odds, cycles
//   parallel:   sp, timeout_s, gpu_comm
//   optim:      lr, beta1, beta2, eps, weight_decay, grad_clip
//   schedule:   kind (cosine|linear|constant|wsd), warmup_steps, min_lr_ratio, decay_steps
//   train:      steps, tokens_per_step, micro_tokens, recompute
//   checkpoint: every, keep_last
//   log:        every, peak_gflops
//   eval:       every, batches, seq_len
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/enum_names.h"
#include "data/curriculum.h"
#include "kernels/tensor.h"  // Device
#include "model/config.h"

namespace rt {

// The recipe's enumerations (their YAML names in EnumNames, core/enum_names.h); run.device is
// Device (kernels/tensor.h) and data.curriculum CurriculumKind (data/curriculum.h).
enum class Precision { Auto, F32, BF16 };  // Auto: resolved at load, never seen after it
template <>
struct EnumNames<Precision> {
  static constexpr std::string_view noun = "precision";
  static constexpr std::array<std::string_view, 3> names = {"auto", "f32", "bf16"};
};

enum class DataMode { ConcatChunk, Decomposed };
template <>
struct EnumNames<DataMode> {
  static constexpr std::string_view noun = "data mode";
  static constexpr std::array<std::string_view, 2> names = {"concat_chunk", "decomposed"};
};

enum class GpuComm { Auto, Nccl, Staged };
template <>
struct EnumNames<GpuComm> {
  static constexpr std::string_view noun = "GPU communicator";
  static constexpr std::array<std::string_view, 3> names = {"auto", "nccl", "staged"};
};

enum class ScheduleKind { Cosine, Linear, Constant, Wsd };
template <>
struct EnumNames<ScheduleKind> {
  static constexpr std::string_view noun = "schedule";
  static constexpr std::array<std::string_view, 4> names = {"cosine", "linear", "constant", "wsd"};
};

struct RunSection {
  std::string name = "ringtrain";
  std::string out_dir;  // "" resolves to "runs/<name>"
  int64_t seed = 1234;
  Device device = Device::CPU;  // cpu | cuda (one GPU per rank: the node-local rank's)
  // f32 | bf16: the linear layers' GEMMs on a bf16 copy of the weights with f32 accumulation
  // (docs/DESIGN.md §3); auto resolves to bf16 on cuda, f32 on cpu (where bf16 is emulated,
  // slower).
  Precision precision = Precision::Auto;
  // Refuse a run whose memory plan (parameters, optimizer state, activations per rank) exceeds
  // the memory available; false tries anyway (for those who know the estimate is pessimistic).
  bool memory_check = true;
};

struct DataSection {
  std::string corpus;      // HDF5 corpus (ringtrain data import); required
  std::string val_corpus;  // optional held-out corpus for eval; "" = no eval data
  // concat_chunk: fixed seq_len sequences of the concatenated corpus; decomposed: one 2^k
  // bucket per step on a curriculum (ringtrain data decompose makes the buckets)
  DataMode mode = DataMode::ConcatChunk;
  int64_t seq_len = 256;                               // tokens per sequence (concat_chunk)
  CurriculumKind curriculum = CurriculumKind::GrowP2;  // uniform | natural | grow_linear | grow_p2
  std::string curriculum_odds;  // "32:16:8:..." one per bucket, shortest first; overrides
  int64_t cycles = 8;           // curriculum cycles per epoch
};

struct ParallelSection {
  int64_t sp = 1;          // sequence-parallel ranks per group; dp = world size / sp
  double timeout_s = 600;  // longest wait for a peer rank before the job is ended
  // run.device: cuda: how GPU buffers travel between ranks. auto: NCCL when the build has it;
  // nccl; staged: through host memory and MPI (any MPI; slower)
  GpuComm gpu_comm = GpuComm::Auto;
};

struct OptimSection {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // max global grad norm; 0 disables clipping
};

struct ScheduleSection {
  ScheduleKind kind = ScheduleKind::Cosine;  // cosine | linear | constant | wsd (after warmup)
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;  // final lr = min_lr_ratio * optim.lr (cosine, linear, wsd)
  int64_t decay_steps = 0;    // wsd: the peak lr holds until the last decay_steps steps
};

struct TrainSection {
  int64_t steps = 100;
  int64_t tokens_per_step = 8192;  // global: over all dp groups
  int64_t micro_tokens = 0;        // per-rank tokens per forward/backward; 0 = all at once
  bool recompute = false;          // keep only layer inputs; recompute layers in backward
};

struct CheckpointSection {
  int64_t every = 0;      // steps between checkpoints; 0 = only at the end (and on SIGTERM)
  int64_t keep_last = 3;  // older step checkpoints are deleted
  // A checkpoint whose weights a new run starts from instead of a random init (one written by
  // `ringtrain convert`, or any run's); optimizer state and step start afresh. Not with --resume.
  std::string init_from;
};

struct LogSection {
  int64_t every = 1;         // console line every N steps (the JSONL log gets every step)
  double peak_gflops = 0.0;  // MFU denominator per rank; 0 = measure sgemm at start
};

struct EvalSection {
  int64_t every = 0;    // steps between validation passes; 0 = never
  int64_t batches = 8;  // batches of tokens_per_step tokens per validation pass
  int64_t seq_len = 0;  // validation sequence length; 0 = data.seq_len
};

struct Recipe {
  RunSection run;
  ModelConfig model;
  DataSection data;
  ParallelSection parallel;
  OptimSection optim;
  ScheduleSection schedule;
  TrainSection train;
  CheckpointSection checkpoint;
  LogSection log;
  EvalSection eval;

  std::string origin;                   // file name (or "<string>") used in error messages
  std::vector<std::string> overridden;  // the key paths a --set gave

  // Where a key's value came from, for messages: "--set" or the recipe's file name.
  std::string where(std::string_view key) const;
};

// Parses YAML text, applies "--set a.b=c" overrides (the value is read as a YAML scalar),
// validates everything that does not depend on the world size, resolves derived values
// (model.resolve(), run.out_dir). Throws UserError.
Recipe parse_recipe(const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& overrides = {});
// Reads the file (a missing or unreadable file is a UserError) and parses it.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
// The resolved recipe as YAML: every section and key, derived values filled. parse_recipe of
// this text gives back an equal recipe. Printed at start and stored in every checkpoint.
std::string recipe_to_yaml(const Recipe& recipe);
// Every valid key path ("optim.lr", ...), for messages and for tests.
std::vector<std::string> recipe_keys();
// The candidate closest to a misspelt name (edit distance), when it is close enough to be the
// likely intent: the "did you mean" of every unknown-name message (recipe keys, op attributes).
std::optional<std::string> nearest_name(std::string_view name,
                                        const std::vector<std::string>& candidates);
// data.curriculum_odds as numbers ("" gives none); nullopt when it is not a list of odds > 0.
std::optional<std::vector<double>> parse_odds(const std::string& text);

}  // namespace rt
