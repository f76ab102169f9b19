// The step: fetch batch -> forward -> loss -> backward -> reduce -> update, with the set-up
// around it (recipe, grid, corpus, model, resume) and the tear-down (checkpoints, signals).
#include "trainer/train.h"

#include <sched.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data/corpus.h"
#include "data/loader.h"
#include "kernels/arena.h"
#include "kernels/device.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "parallel/grid.h"
#include "parallel/watchdog.h"
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

// What every step of the run looks like, fixed at start.
struct StepPlan {
  int64_t seq_len = 0, seqs_per_step = 0, seqs_per_rank = 0, micro_seqs = 0;
  int64_t tokens_per_step = 0;
};

StepPlan plan_steps(const Recipe& r, const Grid& g) {
  StepPlan p;
  p.seq_len = r.data.seq_len;
  p.seqs_per_step = r.train.tokens_per_step / r.data.seq_len;
  p.tokens_per_step = r.train.tokens_per_step;
  if (p.seqs_per_step % g.dp != 0)
    throw UserError(cat(r.origin, ": train.tokens_per_step: ", r.train.tokens_per_step, " = ",
                        p.seqs_per_step, " sequences of data.seq_len ", r.data.seq_len,
                        " cannot be split over dp = ", g.dp,
                        " groups; expected a multiple of ", g.dp * r.data.seq_len, " tokens"));
  p.seqs_per_rank = p.seqs_per_step / g.dp;
  p.micro_seqs = r.train.micro_tokens > 0
                     ? std::min(p.seqs_per_rank, r.train.micro_tokens / r.data.seq_len)
                     : p.seqs_per_rank;
  return p;
}

// A micro-batch with its own storage.
struct OwnedBatch {
  std::vector<int32_t> tokens, targets, positions;
  int64_t n_seqs = 0;
  Batch view(const SequenceLayout& layout, Communicator* sp_group) {
    Batch b;
    const int64_t T = static_cast<int64_t>(tokens.size());
    b.tokens = Tensor::wrap(tokens.data(), {T}, DType::I32);
    b.targets = Tensor::wrap(targets.data(), {T}, DType::I32);
    b.positions = Tensor::wrap(positions.data(), {T}, DType::I32);
    b.seq = {&layout, n_seqs, sp_group};
    return b;
  }
  int64_t target_count() const {
    int64_t n = 0;
    for (int32_t t : targets) n += t >= 0;
    return n;
  }
};

// This rank's micro-batches of global step `step` (or of validation batch `step`).
std::vector<OwnedBatch> fetch_step(const Corpus& corpus, const ConcatChunkSampler& sampler,
                                   const StepPlan& plan, const Grid& grid,
                                   const SequenceLayout& layout, int64_t step) {
  std::vector<OwnedBatch> micro;
  for (int64_t first = 0; first < plan.seqs_per_rank; first += plan.micro_seqs) {
    OwnedBatch& b = micro.emplace_back();
    b.n_seqs = std::min(plan.micro_seqs, plan.seqs_per_rank - first);
    for (int64_t j = 0; j < b.n_seqs; ++j) {
      const int64_t global_j = grid.dp_rank * plan.seqs_per_rank + first + j;
      read_sequence(corpus, sampler.sequence_start(step, global_j, plan.seqs_per_step), layout,
                    b.tokens, b.targets, b.positions);
    }
  }
  return micro;
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

void print_header(const Recipe& r, const Grid& g, int threads, const Model& model,
                  const CorpusInfo& corpus, const StepPlan& plan, const SequenceLayout& layout) {
  std::printf("# resolved recipe (%s)\n%s", r.origin.c_str(), recipe_to_yaml(r).c_str());
  std::printf("world %d = dp %d x sp %d | %d CPU thread%s per rank | MPI\n", g.world_size, g.dp,
              g.sp, threads, threads == 1 ? "" : "s");
  std::printf("model: pattern %s | d_model %lld | %zu layers | %.3fM parameters | %.2f MFLOP/token (training)\n",
              r.model.pattern.c_str(), static_cast<long long>(r.model.d_model),
              r.model.pattern.size(), model.num_params() / 1e6,
              model.flops_per_token(plan.seq_len) / 1e6);
  std::printf("data: %s | %lld tokens, %lld documents, %s | %lld x %lld tokens per step, micro-batch %lld sequences per rank\n",
              corpus.path.c_str(), static_cast<long long>(corpus.num_tokens),
              static_cast<long long>(corpus.num_docs), corpus.fingerprint.c_str(),
              static_cast<long long>(plan.seqs_per_step), static_cast<long long>(plan.seq_len),
              static_cast<long long>(plan.micro_seqs));
  const double state_mib = 4.0 * 4 * model.params().numel() / (1 << 20);  // params, grads, m, v
  std::printf("memory per rank: activations ~%.1f MiB (arena estimate, recompute %s) + parameters, gradients and AdamW state %.1f MiB\n",
              model.activation_bytes(plan.micro_seqs, layout, r.train.recompute) / 1048576.0,
              r.train.recompute ? "on" : "off", state_mib);
  std::fflush(stdout);
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
  Grid grid = Grid::create(mpi_world(), static_cast<int>(recipe.parallel.sp));
  const SequenceLayout layout =
      SequenceLayout::zigzag(recipe.data.seq_len, grid.sp, grid.sp_rank);
  Communicator* sp_group = grid.sp_group.get();

  StepPlan plan;
  Corpus corpus, val_corpus;
  std::unique_ptr<ConcatChunkSampler> sampler, val_sampler;
  on_every_rank(world, [&] {
    plan = plan_steps(recipe, grid);
    auto open = [&](const std::string& path, const std::string& key, Corpus& c,
                    std::unique_ptr<ConcatChunkSampler>& s) {
      c = Corpus::open(path, key);
      if (c.info().vocab_size > recipe.model.vocab_size)
        throw UserError(cat(recipe.origin, ": model.vocab_size: ", recipe.model.vocab_size,
                            " is smaller than the vocabulary of ", path, " (",
                            c.info().vocab_size, "); expected >= ", c.info().vocab_size));
      s = std::make_unique<ConcatChunkSampler>(c.info().num_tokens, recipe.data.seq_len,
                                               static_cast<uint64_t>(recipe.run.seed));
      if (s->num_sequences() < 1)
        throw UserError(cat(key, ": ", path, " holds ", c.info().num_tokens,
                            " tokens, fewer than one sequence of data.seq_len + 1 = ",
                            recipe.data.seq_len + 1));
    };
    open(recipe.data.corpus, "data.corpus", corpus, sampler);
    if (!recipe.data.val_corpus.empty())
      open(recipe.data.val_corpus, "data.val_corpus", val_corpus, val_sampler);
  });

  Model model(recipe.model, /*allocate=*/false);
  if (root) print_header(recipe, grid, threads, model, corpus.info(), plan, layout);
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
      const CheckpointState loaded = load_checkpoint(path, params, optim);
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

  std::unique_ptr<MetricsLog> metrics;
  on_root(world, [&] {
    fs::create_directories(out_dir);
    std::ofstream(fs::path(out_dir) / "recipe.yaml") << state.recipe_yaml;
    metrics = std::make_unique<MetricsLog>((fs::path(out_dir) / "metrics.jsonl").string(),
                                           state.step, true);
  });

  // MFU denominator: the whole world's measured sgemm throughput (ranks measure together, so
  // ranks sharing a machine measure their share of it).
  double peak_gflops = recipe.log.peak_gflops;
  if (peak_gflops <= 0) {
    world.barrier();
    peak_gflops = measure_sgemm_gflops();
  }
  world.allreduce_sum(&peak_gflops, 1);
  if (root) std::printf("MFU peak: %.1f GFLOP/s over %d rank%s (%s)\n", peak_gflops, world.size(),
                        world.size() == 1 ? "" : "s",
                        recipe.log.peak_gflops > 0 ? "log.peak_gflops" : "measured sgemm");

  Watchdog::install_signal_handlers();
  // One block of the estimated size from the start: no regrowth (and fresh page faults) later.
  Arena arena(Device::CPU, static_cast<size_t>(model.activation_bytes(plan.micro_seqs, layout,
                                                                      recipe.train.recompute)));
  const double flops_per_token = model.flops_per_token(plan.seq_len);
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
      for (OwnedBatch& mb : fetch_step(val_corpus, *val_sampler, plan, grid, layout, b)) {
        sums[0] += model.forward_loss(mb.view(layout, sp_group), arena);
        sums[1] += static_cast<double>(mb.target_count());
      }
    world.allreduce_sum(sums, 2, "allreduce(validation loss)");
    if (metrics) metrics->eval(after_step, sums[0] / sums[1], seconds_since(t0));
  };

  for (int64_t step = first_step; step < recipe.train.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    Watchdog::set_context(cat("step ", step + 1));
    std::vector<OwnedBatch> micro = fetch_step(corpus, *sampler, plan, grid, layout, step);
    double targets = 0;
    for (const OwnedBatch& mb : micro) targets += static_cast<double>(mb.target_count());
    world.allreduce_sum(&targets, 1, "allreduce(target count)");
    const float grad_scale = static_cast<float>(1.0 / targets);

    ops::fill(params.flat_grads(), 0.0f);
    arena.reset_peak();
    double loss_sum = 0;
    for (OwnedBatch& mb : micro) {
      loss_sum += model.forward_backward(mb.view(layout, sp_group), grad_scale,
                                         recipe.train.recompute, arena);
      arena.reset();
    }
    world.allreduce_sum(params.flat_grads().f32(), params.numel(), "allreduce(gradients)");
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
    state.step = step + 1;
    state.tokens_seen += plan.tokens_per_step;

    const double seconds = seconds_since(t0);
    if (metrics) {
      StepRecord rec;
      rec.step = state.step;
      rec.total_steps = recipe.train.steps;
      rec.seq_len = plan.seq_len;
      rec.sequences = plan.seqs_per_step;
      rec.loss = loss;
      rec.lr = lr;
      rec.grad_norm = norm;
      rec.seconds = seconds;
      rec.tokens_per_s = plan.tokens_per_step / seconds;
      rec.mfu = flops_per_token * rec.tokens_per_s / (peak_gflops * 1e9);
      rec.peak_rss_mib = flags[1];
      rec.arena_peak_mib = flags[2];
      const double per_step = seconds_since(run_start) / static_cast<double>(state.step - first_step);
      rec.eta_seconds = per_step * static_cast<double>(recipe.train.steps - state.step);
      const bool print = state.step % recipe.log.every == 0 || state.step == recipe.train.steps ||
                         step == first_step;
      metrics->step(rec, print);
    }
    if (val_sampler && recipe.eval.every > 0 && state.step % recipe.eval.every == 0)
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
