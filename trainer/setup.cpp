#include "trainer/setup.h"

#include <sched.h>

#include <set>
#include <thread>

#if RINGTRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "core/check.h"
#include "data/curriculum.h"
#include "data/decompose.h"
#include "data/memory.h"
#include "kernels/ops.h"
#include "parallel/nccl_comm.h"
#include "parallel/staging_comm.h"
#include "trainer/metrics.h"

namespace rt {

namespace {

// Fixed-length sequences of `corpus` (named by `corpus_key`), seq_len set by `len_key`; a
// corpus shorter than one sequence is a UserError.
std::unique_ptr<BatchSource> concat_chunk_source(const Recipe& r, const Corpus& corpus,
                                                 const std::string& corpus_key, int64_t seq_len,
                                                 const std::string& len_key) {
  auto s = std::make_unique<ConcatChunkSource>(corpus.info().num_tokens, seq_len,
                                               r.train.tokens_per_step,
                                               static_cast<uint64_t>(r.run.seed));
  if (s->num_sequences() < 1)
    throw UserError(cat(corpus_key, ": ", corpus.info().path, " holds ", corpus.info().num_tokens,
                        " tokens, fewer than one sequence of ", len_key, " + 1 = ", seq_len + 1));
  return s;
}

// Whether two ranks of `world` use the same GPU (NCCL refuses that; staging through MPI works).
bool ranks_share_a_gpu(Communicator& world) {
  const std::string mine = cuda_device_uuid();
  std::string all(mine.size() * world.size(), '\0');
  world.allgather(mine.data(), all.data(), static_cast<int64_t>(mine.size()), "allgather(GPU ids)");
  std::set<std::string> distinct;
  for (int r = 0; r < world.size(); ++r) distinct.insert(all.substr(r * mine.size(), mine.size()));
  return static_cast<int>(distinct.size()) < world.size();
}

}  // namespace

int configure_threads(const LocalPlacement& placement, std::string& warning) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int bound = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : hw;
  if (!std::getenv("OMP_NUM_THREADS"))
    set_cpu_threads(std::max(1, bound < hw ? bound : hw / placement.local_size));
  if (cpu_threads() > bound)
    warning = cat("warning: ", cpu_threads(),
                  " threads per rank but the launcher bound this "
                  "rank to ",
                  bound, " core", bound == 1 ? "" : "s",
                  "; they will share it (mpirun --bind-to none, or --map-by slot:PE=N)");
  return cpu_threads();
}

std::unique_ptr<Communicator> tensor_communicator(const Recipe& r, Device device, bool dry_run,
                                                  Communicator& world) {
  if (device == Device::CPU || dry_run) return mpi_world();
  const GpuComm choice = r.parallel.gpu_comm;
  if (choice == GpuComm::Nccl && !nccl_compiled())
    throw UserError(cat(r.where("parallel.gpu_comm"),
                        ": parallel.gpu_comm: nccl, but this ringtrain was built without "
                        "NCCL; rebuild with NCCL_ROOT set, or use auto or staged"));
  const bool shared = ranks_share_a_gpu(world);
  if (choice == GpuComm::Nccl && shared)
    throw UserError(cat(r.where("parallel.gpu_comm"),
                        ": parallel.gpu_comm: nccl, but ranks share a GPU (NCCL needs one "
                        "per rank); start one rank per GPU, or use staged"));
  // auto: a world of one has nothing to send, and shared GPUs rule NCCL out.
  if (choice == GpuComm::Staged || !nccl_compiled() ||
      (choice == GpuComm::Auto && (world.size() == 1 || shared)))
    return staging_communicator(mpi_world());
  return nccl_communicator(mpi_world());
}

Corpus open_corpus(const Recipe& r, const std::string& path, const std::string& key) {
  Corpus c = Corpus::open(path, key);
  if (c.info().vocab_size > r.model.vocab_size)
    throw UserError(cat(r.where("model.vocab_size"), ": model.vocab_size: ", r.model.vocab_size,
                        " is smaller than the vocabulary of ", path, " (", c.info().vocab_size,
                        "); expected >= ", c.info().vocab_size));
  return c;
}

std::unique_ptr<BatchSource> make_source(const Recipe& r, const Corpus& corpus) {
  const uint64_t seed = static_cast<uint64_t>(r.run.seed);
  if (r.data.mode == DataMode::ConcatChunk)
    return concat_chunk_source(r, corpus, "data.corpus", r.data.seq_len, "data.seq_len");
  Buckets buckets = read_buckets(corpus.info().path, "data.corpus", corpus.info().num_tokens);
  for (int k = buckets.max_log2; k >= buckets.min_log2; --k)
    if (!buckets.of(k).empty() && (int64_t(1) << k) > r.train.tokens_per_step)
      throw UserError(cat(
          r.where("train.tokens_per_step"), ": train.tokens_per_step: ", r.train.tokens_per_step,
          " is less than the bucket of 2^", k, " = ", int64_t(1) << k, " tokens in data.corpus (",
          buckets.of(k).size(), " sequences); expected at least ", int64_t(1) << k,
          " x dp, or decompose with a smaller --max-len"));
  CurriculumSpec spec;
  spec.kind = r.data.curriculum;
  spec.odds = *parse_odds(r.data.curriculum_odds);
  spec.cycles = r.data.cycles;
  spec.span_steps = r.train.steps;
  if (!spec.odds.empty() && static_cast<int>(spec.odds.size()) != buckets.buckets())
    throw UserError(
        cat(r.where("data.curriculum_odds"), ": data.curriculum_odds: ", spec.odds.size(),
            " odds for the ", buckets.buckets(), " buckets 2^", buckets.min_log2, "..2^",
            buckets.max_log2, " of data.corpus; expected one per bucket, shortest first"));
  return std::make_unique<DecomposedSource>(std::move(buckets), r.train.tokens_per_step, spec,
                                            seed);
}

std::unique_ptr<BatchSource> make_val_source(const Recipe& r, const Corpus& val_corpus) {
  if (r.eval.seq_len)
    return concat_chunk_source(r, val_corpus, "data.val_corpus", r.eval.seq_len, "eval.seq_len");
  return concat_chunk_source(r, val_corpus, "data.val_corpus", r.data.seq_len, "data.seq_len");
}

MemoryPlan memory_plan(const Recipe& r, const Model& model, StepBatcher& batcher,
                       StepBatcher* val_batcher) {
  const double bytes_per_param = 4.0 * 4 + (r.run.precision == Precision::BF16 ? 2.0 : 0.0);
  MemoryPlan plan;
  plan.state_bytes = bytes_per_param * static_cast<double>(model.params().numel());
  plan.activation_bytes =
      static_cast<double>(batcher.max_activation_bytes(model, r.train.recompute));
  if (val_batcher)
    plan.activation_bytes =
        std::max(plan.activation_bytes,
                 static_cast<double>(val_batcher->max_activation_bytes(model, false)));
  return plan;
}

std::string check_memory(const Recipe& r, const MemoryPlan& plan, Device device, int gpu,
                         bool dry_run) {
  const int ranks_here = std::max(1, local_placement().local_size);
  const MemoryAvailable host = host_memory_available();
  const double host_share = static_cast<double>(host.bytes) / ranks_here;
  // On a GPU the host holds the initial values and moments before they move.
  const double host_need = device == Device::CUDA ? plan.state_bytes : plan.total();
  std::string where =
      cat(format_bytes(host_share), " of host memory per rank (", host.source,
          ranks_here > 1 ? cat(", shared by ", ranks_here, " ranks") : std::string(), ")");
  std::string problem;
  if (host_need > host_share)
    problem =
        cat(device == Device::CUDA ? cat("its initial state takes ", format_bytes(host_need), ", ")
                                   : "",
            "more than the ", where);
#if RINGTRAIN_HAVE_CUDA
  if (device == Device::CUDA && gpu >= 0 && problem.empty()) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      where = cat(format_bytes(static_cast<double>(free_bytes)), " free on GPU ", gpu);
      if (plan.total() > static_cast<double>(free_bytes)) problem = cat("more than the ", where);
    }
  }
#endif
  if (device == Device::CUDA && gpu < 0) where += "; GPU memory is checked when the run starts";
  const std::string need = cat(
      "~", format_bytes(plan.total()), " per rank (parameters, gradients and AdamW state ",
      format_bytes(plan.state_bytes), " + activations ", format_bytes(plan.activation_bytes), ")");
  if (problem.empty()) return cat("memory check: ", need, " within ", where);
  const std::string message =
      cat(r.origin, ": the plan needs ", need, ", ", problem,
          "; expected a smaller model (model.d_model, model.pattern), fewer tokens "
          "per micro-batch (train.micro_tokens, data.seq_len, train.recompute: true), "
          "more ranks (parallel.sp), or run.memory_check: false to try anyway");
  if (dry_run || !r.run.memory_check) return cat("warning: ", message);
  throw UserError(message);
}

void print_header(const Recipe& r, const Grid& g, int threads, int gpu, const Model& model,
                  const CorpusInfo& corpus, const BatchSource& source, StepBatcher& batcher,
                  const MemoryPlan& plan) {
  std::printf("# resolved recipe (%s)\n%s", r.origin.c_str(), recipe_to_yaml(r).c_str());
  std::string device = cat(threads, " CPU thread", threads == 1 ? "" : "s", " per rank");
  if (r.run.device == Device::CUDA)
    device = gpu < 0
                 ? "one GPU per rank (not opened by a dry run)"
                 : cat("one GPU per rank: GPU ", gpu, " (", cuda_device_name(gpu), ") on rank 0");
  const std::string comm = r.run.device == Device::CUDA && gpu < 0
                               ? cat("parallel.gpu_comm: ", name_of(r.parallel.gpu_comm), " (NCCL ",
                                     nccl_compiled() ? "built" : "not built", ")")
                               : g.world->backend();
  std::printf("world %d = dp %d x sp %d | %s | %s | %s GEMMs\n", g.world_size, g.dp, g.sp,
              device.c_str(), comm.c_str(), std::string(name_of(r.run.precision)).c_str());
  const std::vector<int64_t> lens = source.seq_lens();
  std::printf(
      "model: pattern %s | d_model %lld | %zu layers | %.3fM parameters | %.2f MFLOP/token "
      "(training, at %lld tokens)\n",
      r.model.pattern.c_str(), static_cast<long long>(r.model.d_model), r.model.pattern.size(),
      model.num_params() / 1e6, model.flops_per_token(lens.back()) / 1e6,
      static_cast<long long>(lens.back()));
  std::printf("data: %s | %lld tokens, %lld documents, %s | %s | %lld tokens per step\n",
              corpus.path.c_str(), static_cast<long long>(corpus.num_tokens),
              static_cast<long long>(corpus.num_docs), corpus.fingerprint.c_str(),
              source.describe().c_str(), static_cast<long long>(r.train.tokens_per_step));
  for (int64_t len : lens)
    std::printf("  sequences of %lld: %lld per step, micro-batches of %lld per dp group\n",
                static_cast<long long>(len), static_cast<long long>(r.train.tokens_per_step / len),
                static_cast<long long>(batcher.micro_seqs(len)));
  std::printf(
      "memory per rank: activations ~%.1f MiB (arena estimate, the largest micro-batch, recompute "
      "%s) + parameters, gradients and AdamW state %.1f MiB\n",
      plan.activation_bytes / 1048576.0, r.train.recompute ? "on" : "off",
      plan.state_bytes / 1048576.0);
  std::fflush(stdout);
}

}  // namespace rt
