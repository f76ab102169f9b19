// The step: fetch batch -> forward -> loss -> backward -> reduce -> update, with the set-up
// around it (recipe, grid, corpus, model, resume) and the tear-down (checkpoints, signals).
#include "trainer/train.h"

#include <sched.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#if RINGTRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "data/corpus.h"
#include "data/decompose.h"
#include "data/loader.h"
#include "data/memory.h"
#include "kernels/arena.h"
#include "kernels/device.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "parallel/grid.h"
#include "parallel/nccl_comm.h"
#include "parallel/staging_comm.h"
#include "parallel/watchdog.h"
#include "trainer/batching.h"
#include "trainer/checkpoint.h"
#include "trainer/collective.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"

namespace rt {

namespace fs = std::filesystem;

namespace {

// How long a rank still waits for its peers once a stop signal has arrived (parallel/watchdog.h).
constexpr double kStopGraceSeconds = 10;

// The world lives until the process ends: main() reports errors after run_train unwound.
std::unique_ptr<Communicator> g_world;

// One process per core group: with OMP_NUM_THREADS unset, a rank takes the cores it is bound
// to, or its share of the machine when the launcher did not bind it. Returns the thread count
// and, in `warning`, what is wrong with an explicit OMP_NUM_THREADS.
int configure_threads(const LocalPlacement& placement, std::string& warning) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int bound = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : hw;
  if (!std::getenv("OMP_NUM_THREADS"))
    set_cpu_threads(std::max(1, bound < hw ? bound : hw / placement.local_size));
  if (cpu_threads() > bound)
    warning = cat("warning: ", cpu_threads(), " threads per rank but the launcher bound this "
                  "rank to ", bound, " core", bound == 1 ? "" : "s",
                  "; they will share it (mpirun --bind-to none, or --map-by slot:PE=N)");
  return cpu_threads();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --resume alone: this run's checkpoints; --resume=PATH: a checkpoint file, a checkpoint
// directory or a run directory (its checkpoints/); --resume=auto: this run's checkpoints if
// there are any (returns "" when there are none: start from scratch).
std::string resolve_resume_path(const TrainOptions& opt, const std::string& checkpoint_dir) {
  if (opt.resume_path == "auto") return latest_checkpoint(checkpoint_dir);
  if (!opt.resume_path.empty() && !fs::is_directory(opt.resume_path)) return opt.resume_path;
  fs::path dir = opt.resume_path.empty() ? checkpoint_dir : opt.resume_path;
  if (!fs::exists(dir / "latest") && fs::is_directory(dir / "checkpoints")) dir /= "checkpoints";
  const std::string latest = latest_checkpoint(dir.string());
  if (latest.empty())
    throw UserError(cat("--resume: no checkpoint in ", dir.string(),
                        " (no 'latest' file); start without --resume to train from scratch"));
  return latest;
}

// Test aid: RINGTRAIN_FAIL_CHECKPOINT="STEP:N" makes the checkpoint of step STEP fail after N
// datasets are written, as a full disk would.
CheckpointFaultHook fault_hook_for(int64_t step) {
  const char* spec = std::getenv("RINGTRAIN_FAIL_CHECKPOINT");
  if (!spec) return {};
  long long at_step = -1, after = 0;
  if (std::sscanf(spec, "%lld:%lld", &at_step, &after) != 2 || at_step != step) return {};
  auto written = std::make_shared<long long>(0);
  return [written, after](const std::string& dataset) {
    if (++*written > after) throw std::runtime_error("injected failure after writing " + dataset);
  };
}

// What one rank holds: f32 parameters, gradients, AdamW m and v, under bf16 the weights' bf16
// copy; and the arena of activations (the largest micro-batch, the dry run's estimate).
struct MemoryPlan {
  double state_bytes = 0;
  double activation_bytes = 0;
  double total() const { return state_bytes + activation_bytes; }
};

MemoryPlan memory_plan(const Recipe& r, const Model& model, StepBatcher& batcher,
                       StepBatcher* val_batcher) {
  const double bytes_per_param = 4.0 * 4 + (r.run.precision == "bf16" ? 2.0 : 0.0);
  MemoryPlan plan;
  plan.state_bytes = bytes_per_param * static_cast<double>(model.params().numel());
  plan.activation_bytes = static_cast<double>(batcher.max_activation_bytes(model, r.train.recompute));
  if (val_batcher)
    plan.activation_bytes = std::max(plan.activation_bytes,
                                     static_cast<double>(val_batcher->max_activation_bytes(model, false)));
  return plan;
}

// The plan against what this rank can have: the host's available memory (MemAvailable or the
// cgroup's limit) shared by the ranks of this node, and on a GPU its free memory. Refused
// before anything is allocated (a UserError), unless run.memory_check is false; a dry run
// (no GPU opened) only says it.
std::string check_memory(const Recipe& r, const MemoryPlan& plan, Device device, int gpu,
                         bool dry_run) {
  const int ranks_here = std::max(1, local_placement().local_size);
  const MemoryAvailable host = host_memory_available();
  const double host_share = static_cast<double>(host.bytes) / ranks_here;
  // On a GPU the host holds the initial values and moments before they move.
  const double host_need = device == Device::CUDA ? plan.state_bytes : plan.total();
  std::string where = cat(format_bytes(host_share), " of host memory per rank (", host.source,
                          ranks_here > 1 ? cat(", shared by ", ranks_here, " ranks") : std::string(), ")");
  std::string problem;
  if (host_need > host_share)
    problem = cat(device == Device::CUDA ? cat("its initial state takes ", format_bytes(host_need), ", ") : "",
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
  const std::string need = cat("~", format_bytes(plan.total()), " per rank (parameters, gradients and AdamW state ",
                               format_bytes(plan.state_bytes), " + activations ",
                               format_bytes(plan.activation_bytes), ")");
  if (problem.empty()) return cat("memory check: ", need, " within ", where);
  const std::string message = cat(r.origin, ": the plan needs ", need, ", ", problem,
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
  if (r.run.device == "cuda")
    device = gpu < 0 ? "one GPU per rank (not opened by a dry run)"
                     : cat("one GPU per rank: GPU ", gpu, " (", cuda_device_name(gpu), ") on rank 0");
  const std::string comm = r.run.device == "cuda" && gpu < 0
      ? cat("parallel.gpu_comm: ", r.parallel.gpu_comm, " (NCCL ", nccl_compiled() ? "built" : "not built", ")")
      : g.world->backend();
  std::printf("world %d = dp %d x sp %d | %s | %s | %s GEMMs\n", g.world_size, g.dp, g.sp,
              device.c_str(), comm.c_str(), r.run.precision.c_str());
  const std::vector<int64_t> lens = source.seq_lens();
  std::printf("model: pattern %s | d_model %lld | %zu layers | %.3fM parameters | %.2f MFLOP/token (training, at %lld tokens)\n",
              r.model.pattern.c_str(), static_cast<long long>(r.model.d_model),
              r.model.pattern.size(), model.num_params() / 1e6,
              model.flops_per_token(lens.back()) / 1e6, static_cast<long long>(lens.back()));
  std::printf("data: %s | %lld tokens, %lld documents, %s | %s | %lld tokens per step\n",
              corpus.path.c_str(), static_cast<long long>(corpus.num_tokens),
              static_cast<long long>(corpus.num_docs), corpus.fingerprint.c_str(),
              source.describe().c_str(), static_cast<long long>(r.train.tokens_per_step));
  for (int64_t len : lens)
    std::printf("  sequences of %lld: %lld per step, micro-batches of %lld per dp group\n",
                static_cast<long long>(len), static_cast<long long>(r.train.tokens_per_step / len),
                static_cast<long long>(batcher.micro_seqs(len)));
  std::printf("memory per rank: activations ~%.1f MiB (arena estimate, the largest micro-batch, recompute %s) + parameters, gradients and AdamW state %.1f MiB\n",
              plan.activation_bytes / 1048576.0, r.train.recompute ? "on" : "off",
              plan.state_bytes / 1048576.0);
  std::fflush(stdout);
}

// Fixed-length sequences of `corpus` (named by `corpus_key`), seq_len set by `len_key`; a
// corpus shorter than one sequence is a UserError.
std::unique_ptr<BatchSource> concat_chunk_source(const Recipe& r, const Corpus& corpus,
                                                 const std::string& corpus_key, int64_t seq_len,
                                                 const std::string& len_key) {
  auto s = std::make_unique<ConcatChunkSource>(corpus.info().num_tokens, seq_len, r.train.tokens_per_step,
                                               static_cast<uint64_t>(r.run.seed));
  if (s->num_sequences() < 1)
    throw UserError(cat(corpus_key, ": ", corpus.info().path, " holds ", corpus.info().num_tokens,
                        " tokens, fewer than one sequence of ", len_key, " + 1 = ", seq_len + 1));
  return s;
}

// The batches of the run: concat-and-chunk or the dataset-decomposition curriculum.
std::unique_ptr<BatchSource> make_source(const Recipe& r, const Corpus& corpus) {
  const uint64_t seed = static_cast<uint64_t>(r.run.seed);
  if (r.data.mode == "concat_chunk") return concat_chunk_source(r, corpus, "data.corpus", r.data.seq_len, "data.seq_len");
  Buckets buckets = read_buckets(corpus.info().path, "data.corpus", corpus.info().num_tokens);
  for (int k = buckets.max_log2; k >= buckets.min_log2; --k)
    if (!buckets.of(k).empty() && (int64_t(1) << k) > r.train.tokens_per_step)
      throw UserError(cat(r.origin, ": train.tokens_per_step: ", r.train.tokens_per_step,
                          " is less than the bucket of 2^", k, " = ", int64_t(1) << k,
                          " tokens in data.corpus (", buckets.of(k).size(),
                          " sequences); expected at least ", int64_t(1) << k,
                          " x dp, or decompose with a smaller --max-len"));
  CurriculumSpec spec;
  spec.kind = r.data.curriculum;
  spec.odds = *parse_odds(r.data.curriculum_odds);
  spec.cycles = r.data.cycles;
  if (!spec.odds.empty() && static_cast<int>(spec.odds.size()) != buckets.buckets())
    throw UserError(cat(r.origin, ": data.curriculum_odds: ", spec.odds.size(),
                        " odds for the ", buckets.buckets(), " buckets 2^", buckets.min_log2, "..2^",
                        buckets.max_log2, " of data.corpus; expected one per bucket, shortest first"));
  return std::make_unique<DecomposedSource>(std::move(buckets), r.train.tokens_per_step, spec, seed);
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

// What carries the model's tensors between ranks: MPI for CPU tensors; for GPU tensors NCCL,
// or MPI with the device buffers staged through host memory (parallel.gpu_comm). Collective.
std::unique_ptr<Communicator> tensor_communicator(const Recipe& r, Device device, bool dry_run,
                                                  Communicator& world) {
  if (device == Device::CPU || dry_run) return mpi_world();
  const std::string& choice = r.parallel.gpu_comm;
  if (choice == "nccl" && !nccl_compiled())
    throw UserError(cat(r.origin, ": parallel.gpu_comm: nccl, but this ringtrain was built without "
                        "NCCL; rebuild with NCCL_ROOT set, or use auto or staged"));
  const bool shared = ranks_share_a_gpu(world);
  if (choice == "nccl" && shared)
    throw UserError(cat(r.origin, ": parallel.gpu_comm: nccl, but ranks share a GPU (NCCL needs one "
                        "per rank); start one rank per GPU, or use staged"));
  // auto: a world of one has nothing to send, and shared GPUs rule NCCL out.
  if (choice == "staged" || !nccl_compiled() || (choice == "auto" && (world.size() == 1 || shared)))
    return staging_communicator(mpi_world());
  return nccl_communicator(mpi_world());
}

}  // namespace

int process_rank() { return g_world ? g_world->rank() : 0; }

void abort_job_if_parallel(int code) {
  if (g_world && g_world->size() > 1) g_world->abort(code);
}

int run_train(const TrainOptions& opt) {
  if (!g_world) g_world = mpi_world();
  Communicator& world = *g_world;
  std::string thread_warning;
  const int threads = configure_threads(local_placement(), thread_warning);
  const bool root = world.rank() == 0;
  if (root && !thread_warning.empty()) std::fprintf(stderr, "%s\n", thread_warning.c_str());

  Recipe recipe;
  on_every_rank(world, [&] {
    recipe = load_recipe(opt.recipe_path, opt.overrides);
    const int64_t sp = recipe.parallel.sp;
    if (world.size() % sp != 0)
      throw UserError(cat(recipe.origin, ": parallel.sp: ", sp, " does not divide the ",
                          world.size(), " ranks; expected a divisor of the world size"));
  });
  Watchdog::start({recipe.parallel.timeout_s, kStopGraceSeconds, world.rank()});
  const Device device = recipe.run.device == "cuda" ? Device::CUDA : Device::CPU;
  int gpu = -1;
  if (device == Device::CUDA && !opt.dry_run)  // a dry run checks the recipe on any machine
    on_every_rank(world, [&] { gpu = use_cuda_device(local_placement().local_rank); });
  std::unique_ptr<Communicator> tensors;
  on_every_rank(world, [&] { tensors = tensor_communicator(recipe, device, opt.dry_run, world); });
  Grid grid = Grid::create(std::move(tensors), static_cast<int>(recipe.parallel.sp));
  Communicator* sp_group = grid.sp_group.get();

  Corpus corpus, val_corpus;
  std::unique_ptr<BatchSource> source, val_source;
  std::unique_ptr<StepBatcher> batcher, val_batcher;
  const int64_t conv_halo =
      recipe.model.pattern.find('M') != std::string::npos ? recipe.model.mamba_conv_width - 1 : 0;
  on_every_rank(world, [&] {
    auto open = [&](const std::string& path, const std::string& key) {
      Corpus c = Corpus::open(path, key);
      if (c.info().vocab_size > recipe.model.vocab_size)
        throw UserError(cat(recipe.origin, ": model.vocab_size: ", recipe.model.vocab_size,
                            " is smaller than the vocabulary of ", path, " (",
                            c.info().vocab_size, "); expected >= ", c.info().vocab_size));
      return c;
    };
    corpus = open(recipe.data.corpus, "data.corpus");
    source = make_source(recipe, corpus);
    batcher = std::make_unique<StepBatcher>(*source, corpus, grid, recipe.train.tokens_per_step,
                                            recipe.train.micro_tokens);
    batcher->check(recipe.origin, conv_halo);
    if (!recipe.data.val_corpus.empty()) {
      // Validation reads fixed-length sequences (eval.seq_len), so that runs of either data mode
      // are measured on the same batches.
      val_corpus = open(recipe.data.val_corpus, "data.val_corpus");
      val_source = recipe.eval.seq_len
                       ? concat_chunk_source(recipe, val_corpus, "data.val_corpus", recipe.eval.seq_len, "eval.seq_len")
                       : concat_chunk_source(recipe, val_corpus, "data.val_corpus", recipe.data.seq_len, "data.seq_len");
      val_batcher = std::make_unique<StepBatcher>(*val_source, val_corpus, grid,
                                                  recipe.train.tokens_per_step, recipe.train.micro_tokens);
      val_batcher->check(recipe.origin, conv_halo);
    }
  });

  Model model(recipe.model, /*allocate=*/false);
  if (recipe.run.precision == "bf16") model.params().keep_bf16_copy();  // before the estimate
  const MemoryPlan plan = memory_plan(recipe, model, *batcher, val_batcher.get());
  if (root) print_header(recipe, grid, threads, gpu, model, corpus.info(), *source, *batcher, plan);
  // Before anything of the model is allocated: a recipe this machine cannot hold is refused.
  std::string memory_note;
  on_every_rank(world, [&] { memory_note = check_memory(recipe, plan, device, gpu, opt.dry_run); });
  if (root) std::printf("%s\n", memory_note.c_str());
  if (opt.dry_run) {
    if (root) std::printf("dry run: recipe, corpus and layout are valid; nothing was trained\n");
    return 0;
  }

  model.params().allocate();
  model.init_weights(static_cast<uint64_t>(recipe.run.seed));
  ParameterSet& params = model.params();
  AdamWOptimizer optim(params, recipe.optim);
  const std::string out_dir = recipe.run.out_dir;
  const std::string checkpoint_dir = (fs::path(out_dir) / "checkpoints").string();
  CheckpointState state;
  state.dp = grid.dp;
  state.sp = grid.sp;
  state.seed = recipe.run.seed;
  state.data_mode = recipe.data.mode;
  state.recipe_yaml = recipe_to_yaml(recipe);
  state.corpus_fingerprint = corpus.info().fingerprint;

  if (opt.resume) {
    on_root(world, [&] {
      const std::string path = resolve_resume_path(opt, checkpoint_dir);
      if (path.empty()) {  // --resume=auto without a checkpoint
        std::printf("no checkpoint in %s: starting from step 0\n", checkpoint_dir.c_str());
        return;
      }
      const CheckpointState loaded = load_checkpoint(path, params, &optim);
      if (loaded.corpus_fingerprint != state.corpus_fingerprint)
        throw UserError(cat(path, ": written for the corpus ", loaded.corpus_fingerprint,
                            ", but data.corpus ", recipe.data.corpus, " is ",
                            state.corpus_fingerprint, "; resume on the corpus the run started with"));
      if (loaded.step >= recipe.train.steps)
        throw UserError(cat(path, ": already at step ", loaded.step, " of train.steps ",
                            recipe.train.steps, "; raise train.steps (--set train.steps=N) to train on"));
      state.step = loaded.step;
      state.tokens_seen = loaded.tokens_seen;
      std::printf("resumed from %s at step %lld\n", path.c_str(), static_cast<long long>(loaded.step));
    });
    int64_t header[2] = {state.step, state.tokens_seen};
    world.broadcast(header, sizeof header, 0);
    state.step = header[0];
    state.tokens_seen = header[1];
    for (const Tensor& t : {params.flat_values(), optim.m(), optim.v()})
      world.broadcast(t.data(), static_cast<int64_t>(t.nbytes()), 0);
  }
  // Initialised or loaded on the host, trained where the recipe says.
  params.move_to(device);  // (and the bf16 copy made from the final values)
  optim.move_to(device);

  std::unique_ptr<MetricsLog> metrics;
  on_root(world, [&] {
    fs::create_directories(out_dir);
    std::ofstream(fs::path(out_dir) / "recipe.yaml") << state.recipe_yaml;
    metrics = std::make_unique<MetricsLog>((fs::path(out_dir) / "metrics.jsonl").string(),
                                           state.step, true);
  });

  // MFU denominator: the sum over ranks of each one's peak (trainer/metrics.h): on the CPU the
  // measured sgemm (ranks measure together, so ranks sharing a machine measure their share of
  // it), on a GPU its dense bf16 peak.
  double peak_gflops = recipe.log.peak_gflops;
  std::string peak_source = "log.peak_gflops";
  if (peak_gflops <= 0) {
    world.barrier();
    const PeakEstimate peak = device_peak_gflops(device, gpu);
    peak_gflops = peak.gflops;
    peak_source = peak.source;
  }
  world.allreduce_sum(&peak_gflops, 1, "allreduce(peak GFLOP/s)");
  if (root) std::printf("MFU peak: %.1f GFLOP/s over %d rank%s (%s)\n", peak_gflops, world.size(),
                        world.size() == 1 ? "" : "s", peak_source.c_str());

  Watchdog::install_signal_handlers();
  // One block of the estimated size from the start: no regrowth (and fresh page faults) later.
  Arena arena(device, static_cast<size_t>(plan.activation_bytes));
  const auto run_start = std::chrono::steady_clock::now();
  const int64_t first_step = state.step;
  std::string last_checkpoint = opt.resume ? "(the one resumed from)" : "(none yet)";

  auto save = [&] {
    on_root(world, [&] {
      last_checkpoint = save_checkpoint(checkpoint_dir, state, params, optim,
                                        recipe.checkpoint.keep_last, fault_hook_for(state.step));
      std::printf("checkpoint %s\n", last_checkpoint.c_str());
      std::fflush(stdout);
    });
  };

  auto validate = [&](int64_t after_step) {
    const auto t0 = std::chrono::steady_clock::now();
    double sums[2] = {0, 0};  // loss sum, target count
    for (int64_t b = 0; b < recipe.eval.batches; ++b)
      for (OwnedBatch& mb : val_batcher->fetch(b).micro) {
        sums[0] += model.forward_loss(mb.view(sp_group, device), arena);
        sums[1] += static_cast<double>(mb.target_count());
      }
    world.allreduce_sum(sums, 2, "allreduce(validation loss)");
    if (metrics) metrics->eval(after_step, sums[0] / sums[1], seconds_since(t0));
  };

  for (int64_t step = first_step; step < recipe.train.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    Watchdog::set_context(cat("step ", step + 1));
    RankStep batch = batcher->fetch(step);
    double targets = 0;
    for (const OwnedBatch& mb : batch.micro) targets += static_cast<double>(mb.target_count());
    world.allreduce_sum(&targets, 1, "allreduce(target count)");
    const float grad_scale = static_cast<float>(1.0 / targets);

    ops::fill(params.flat_grads(), 0.0f);
    arena.reset_peak();
    double loss_sum = 0;
    for (OwnedBatch& mb : batch.micro) {
      loss_sum += model.forward_backward(mb.view(sp_group, device), grad_scale, recipe.train.recompute, arena);
      arena.reset();
    }
    // grid.world: the communicator of the model's tensors (it stages or uses NCCL on the GPU).
    grid.world->allreduce_sum(params.flat_grads().f32(), params.numel(), "allreduce(gradients)");
    // The stop flag travels with the memory figures: every rank learns the largest of each.
    double flags[3] = {Watchdog::stop_signal() ? 1.0 : 0.0, peak_rss_mib(), arena.peak() / 1048576.0};
    world.allreduce_sum(&loss_sum, 1, "allreduce(loss)");
    world.allreduce_max(flags, 3, "allreduce(stop flag, memory)");
    const double stop = flags[0];

    const double loss = loss_sum / targets;
    const double norm = grad_norm(params);
    if (!std::isfinite(loss) || !std::isfinite(norm))  // the same numbers on every rank
      throw AgreedError(cat("step ", step + 1, ": loss is ", loss, " and the gradient norm is ",
                            norm, "; stopped before the update. Last checkpoint: ",
                            last_checkpoint, ". Try a lower optim.lr, a longer "
                            "schedule.warmup_steps or optim.grad_clip"),
                        kExitDiverged);
    clip_grad_norm(params, norm, recipe.optim.grad_clip);
    const double lr = learning_rate(recipe.optim, recipe.schedule, recipe.train.steps, step);
    optim.update(params, lr, step);
    // The update itself can overflow (a huge lr) or carry a non-finite moment forward: checked
    // here, before the state can reach a checkpoint or the next step (the same values on
    // every rank; agreed all the same, so that no rank waits for one that stopped).
    on_every_rank(world, [&] {
      const std::string bad = first_non_finite(params, optim.m(), optim.v());
      if (!bad.empty())
        throw RunError(cat("step ", step + 1, ": after the update (lr ", lr, ") ", bad,
                           " holds a non-finite value; stopped before a checkpoint could hold it. "
                           "Last checkpoint: ", last_checkpoint, ". Try a lower optim.lr or "
                           "optim.grad_clip"),
                       kExitDiverged);
    });
    state.step = step + 1;
    state.tokens_seen += recipe.train.tokens_per_step;

    const double seconds = seconds_since(t0);
    if (metrics) {
      StepRecord rec;
      rec.step = state.step;
      rec.total_steps = recipe.train.steps;
      rec.seq_len = batch.seq_len;
      rec.sequences = batch.sequences;
      rec.loss = loss;
      rec.lr = lr;
      rec.grad_norm = norm;
      rec.seconds = seconds;
      rec.tokens_per_s = static_cast<double>(recipe.train.tokens_per_step) / seconds;
      rec.model_gflop = model.flops_per_token(batch.seq_len) * recipe.train.tokens_per_step / 1e9;
      rec.attention_gflop = model.attention_flops_per_token(batch.seq_len) * recipe.train.tokens_per_step / 1e9;
      rec.mfu = rec.model_gflop / seconds / peak_gflops;
      rec.peak_rss_mib = flags[1];
      rec.arena_peak_mib = flags[2];
      const double per_step = seconds_since(run_start) / static_cast<double>(state.step - first_step);
      rec.eta_seconds = per_step * static_cast<double>(recipe.train.steps - state.step);
      const bool print = state.step % recipe.log.every == 0 || state.step == recipe.train.steps ||
                         step == first_step;
      metrics->step(rec, print);
    }
    if (val_batcher && recipe.eval.every > 0 && state.step % recipe.eval.every == 0)
      validate(state.step);

    const bool last = state.step == recipe.train.steps;
    const bool periodic = recipe.checkpoint.every > 0 && state.step % recipe.checkpoint.every == 0;
    if (stop > 0 || state.step == opt.stop_at) {
      if (root) std::printf("%s: saving a checkpoint after step %lld\n",
                            stop > 0 ? "stop signal received" : "--stop-at reached",
                            static_cast<long long>(state.step));
      save();
      if (root) std::printf("stopped at step %lld; continue with: ringtrain train %s --resume\n",
                            static_cast<long long>(state.step), opt.recipe_path.c_str());
      return 0;
    }
    if (last || periodic) save();
  }
  if (root) {
    std::printf("done: %lld steps in %s | checkpoint %s | metrics %s\n",
                static_cast<long long>(recipe.train.steps),
                format_duration(seconds_since(run_start)).c_str(), last_checkpoint.c_str(),
                metrics->path().c_str());
  }
  return 0;
}

}  // namespace rt
