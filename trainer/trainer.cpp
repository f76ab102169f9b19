#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "parallel/watchdog.h"
#include "trainer/collective.h"

namespace rt {

namespace fs = std::filesystem;

namespace {

// How long a rank still waits for its peers once a stop signal has arrived (parallel/watchdog.h).
constexpr double kStopGraceSeconds = 10;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --resume alone: this run's checkpoints; --resume=PATH: a checkpoint file, a checkpoint
// directory or a run directory (its checkpoints/); --resume=auto: this run's checkpoints if
// there are any (returns "" when there are none: start from scratch).
std::string resolve_resume_path(const TrainOptions& opt, const std::string& checkpoint_dir) {
  if (opt.resume_path == "auto") {
    const std::string latest = latest_checkpoint(checkpoint_dir);
    const std::vector<std::string> files = checkpoint_files(checkpoint_dir);
    if (latest.empty() && !files.empty())
      throw UserError(cat("--resume=auto: ", checkpoint_dir, " holds ", files.size(),
                          " checkpoint(s) but no 'latest' file; resume one by path (--resume=",
                          files.back(), ") rather than start over"));
    return latest;
  }
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

}  // namespace

Trainer::Trainer(Communicator& world, const TrainOptions& options)
    : world_(world), opt_(options), root_(world.rank() == 0) {
  std::string thread_warning;
  threads_ = configure_threads(local_placement(), thread_warning);
  if (root_ && !thread_warning.empty()) std::fprintf(stderr, "%s\n", thread_warning.c_str());
  load_recipe_and_grid();
  open_data();
  plan_memory();
  if (!recipe_.checkpoint.init_from.empty() && !opt_.resume)  // a dry run checks it too
    on_root(world_, [&] {
      check_weights_match(recipe_.checkpoint.init_from, model_->params(),
                          recipe_.where("checkpoint.init_from") + ": checkpoint.init_from");
    });
}

Trainer::~Trainer() = default;

void Trainer::load_recipe_and_grid() {
  on_every_rank(world_, [&] {
    recipe_ = load_recipe(opt_.recipe_path, opt_.overrides);
    const int64_t sp = recipe_.parallel.sp;
    if (world_.size() % sp != 0)
      throw UserError(cat(recipe_.where("parallel.sp"), ": parallel.sp: ", sp,
                          " does not divide the ", world_.size(),
                          " ranks; expected a divisor of the world size"));
  });
  Watchdog::start({recipe_.parallel.timeout_s, kStopGraceSeconds, world_.rank()});
  device_ = recipe_.run.device;
  if (device_ == Device::CUDA && !opt_.dry_run)  // a dry run checks the recipe on any machine
    on_every_rank(world_, [&] { gpu_ = use_cuda_device(local_placement().local_rank); });
  std::unique_ptr<Communicator> tensors;
  on_every_rank(world_,
                [&] { tensors = tensor_communicator(recipe_, device_, opt_.dry_run, world_); });
  grid_ = Grid::create(std::move(tensors), static_cast<int>(recipe_.parallel.sp));
}

void Trainer::open_data() {
  const int64_t conv_halo = recipe_.model.conv_halo_rows();
  const int64_t tokens = recipe_.train.tokens_per_step, micro = recipe_.train.micro_tokens;
  on_every_rank(world_, [&] {
    corpus_ = open_corpus(recipe_, recipe_.data.corpus, "data.corpus");
    source_ = make_source(recipe_, corpus_);
    batcher_ = std::make_unique<StepBatcher>(*source_, corpus_, grid_, tokens, micro);
    batcher_->check(recipe_, conv_halo);
    if (recipe_.data.val_corpus.empty()) return;
    val_corpus_ = open_corpus(recipe_, recipe_.data.val_corpus, "data.val_corpus");
    val_source_ = make_val_source(recipe_, val_corpus_);
    val_batcher_ = std::make_unique<StepBatcher>(*val_source_, val_corpus_, grid_, tokens, micro);
    val_batcher_->check(recipe_, conv_halo);
  });
}

// Before anything of the model is allocated: a recipe this machine cannot hold is refused.
void Trainer::plan_memory() {
  model_ = std::make_unique<Model>(recipe_.model, /*allocate=*/false);
  if (recipe_.run.precision == Precision::BF16)
    model_->params().keep_bf16_copy();  // before the estimate
  plan_ = memory_plan(recipe_, *model_, *batcher_, val_batcher_.get());
  if (root_)
    print_header(recipe_, grid_, threads_, gpu_, *model_, corpus_.info(), *source_, *batcher_,
                 plan_);
  std::string memory_note;
  on_every_rank(world_,
                [&] { memory_note = check_memory(recipe_, plan_, device_, gpu_, opt_.dry_run); });
  if (root_) std::printf("%s\n", memory_note.c_str());
}

int Trainer::run() {
  if (opt_.dry_run) {
    if (root_) std::printf("dry run: recipe, corpus and layout are valid; nothing was trained\n");
    return 0;
  }
  allocate();
  if (opt_.resume) {
    resume();
  } else {
    claim_run_directory();
    if (!recipe_.checkpoint.init_from.empty()) init_from();
  }
  // Initialised or loaded on the host, trained where the recipe says.
  model_->params().move_to(device_);  // (and the bf16 copy made from the final values)
  optim_->move_to(device_);
  open_run_directory();
  measure_peak();

  Watchdog::install_signal_handlers();
  // One block of the estimated size from the start: no regrowth (and fresh page faults) later.
  arena_ = std::make_unique<Arena>(device_, static_cast<size_t>(plan_.activation_bytes));
  step_ = std::make_unique<TrainStep>(*model_, *optim_, world_, *grid_.world, *arena_,
                                      recipe_.train.recompute, recipe_.optim.grad_clip);
  run_start_ = std::chrono::steady_clock::now();
  first_step_ = state_.step;
  last_checkpoint_ = opt_.resume ? "(the one resumed from)" : "(none yet)";
  for (int64_t step = first_step_; step < recipe_.train.steps; ++step)
    if (!train_step(step)) return 0;
  finish();
  return 0;
}

void Trainer::allocate() {
  model_->params().allocate();
  model_->init_weights(static_cast<uint64_t>(recipe_.run.seed));
  optim_ = std::make_unique<AdamWOptimizer>(model_->params(), recipe_.optim);
  checkpoint_dir_ = (fs::path(recipe_.run.out_dir) / "checkpoints").string();
  state_.dp = grid_.dp;
  state_.sp = grid_.sp;
  state_.seed = recipe_.run.seed;
  state_.data_mode = name_of(recipe_.data.mode);
  state_.recipe_yaml = recipe_to_yaml(recipe_);
  state_.corpus_fingerprint = corpus_.info().fingerprint;
}

// Rank 0 reads the checkpoint and checks it against the run; every rank receives the values.
void Trainer::resume() {
  on_root(world_, [&] {
    const std::string path = resolve_resume_path(opt_, checkpoint_dir_);
    if (path.empty()) {  // --resume=auto without a checkpoint
      std::printf("no checkpoint in %s: starting from step 0\n", checkpoint_dir_.c_str());
      return;
    }
    const CheckpointState loaded = load_checkpoint(path, model_->params(), optim_.get());
    if (loaded.corpus_fingerprint != state_.corpus_fingerprint)
      throw UserError(cat(path, ": written for the corpus ", loaded.corpus_fingerprint,
                          ", but data.corpus ", recipe_.data.corpus, " is ",
                          state_.corpus_fingerprint,
                          "; resume on the corpus the run started with"));
    if (loaded.step >= recipe_.train.steps)
      throw UserError(cat(path, ": already at step ", loaded.step, " of train.steps ",
                          recipe_.train.steps,
                          "; raise train.steps (--set train.steps=N) to train on"));
    if (opt_.stop_at > 0 && opt_.stop_at <= loaded.step)
      throw UserError(cat("--stop-at=", opt_.stop_at, ": the run resumes at step ", loaded.step,
                          " (", path, "); expected a step after it, at most train.steps ",
                          recipe_.train.steps));
    state_.step = loaded.step;
    state_.tokens_seen = loaded.tokens_seen;
    std::printf("resumed from %s at step %lld\n", path.c_str(),
                static_cast<long long>(loaded.step));
  });
  int64_t header[2] = {state_.step, state_.tokens_seen};
  world_.broadcast(header, sizeof header, 0, "broadcast(resume step)");
  state_.step = header[0];
  state_.tokens_seen = header[1];
  for (const Tensor& t : {model_->params().flat_values(), optim_->m(), optim_->v()})
    world_.broadcast(t.data(), static_cast<int64_t>(t.nbytes()), 0, "broadcast(resumed state)");
}

// A new run from another's weights (checkpoint.init_from): the parameters only; step,
// optimizer state and data start afresh.
void Trainer::init_from() {
  const std::string& path = recipe_.checkpoint.init_from;
  on_root(world_, [&] {
    load_checkpoint(path, model_->params(), nullptr);
    std::printf("initialised the weights from %s\n", path.c_str());
  });
  const Tensor values = model_->params().flat_values();
  world_.broadcast(values.data(), static_cast<int64_t>(values.nbytes()), 0,
                   "broadcast(initial weights)");
}

// A run directory belongs to one run: a new run does not write over the checkpoints or the
// metrics of another (its pruning and its metrics would destroy them) unless --overwrite says so.
void Trainer::claim_run_directory() {
  on_root(world_, [&] {
    const fs::path out_dir = recipe_.run.out_dir, metrics = out_dir / "metrics.jsonl";
    std::vector<std::string> found = checkpoint_files(checkpoint_dir_);
    if (fs::exists(fs::path(checkpoint_dir_) / "latest"))
      found.push_back((fs::path(checkpoint_dir_) / "latest").string());
    if (fs::exists(metrics) && fs::file_size(metrics) > 0) found.push_back(metrics.string());
    if (found.empty()) return;
    if (!opt_.overwrite)
      throw UserError(cat("run.out_dir: ", out_dir.string(), " holds another run (", found.size(),
                          " file(s): ", found.front(),
                          ", ...); continue it with --resume, start "
                          "over in it with --overwrite (deletes them), or give this run its own "
                          "directory (--set run.out_dir=DIR)"));
    for (const std::string& f : found) fs::remove(f);
    std::printf("--overwrite: removed %zu file(s) of the previous run in %s\n", found.size(),
                out_dir.c_str());
  });
}

void Trainer::open_run_directory() {
  on_root(world_, [&] {
    const fs::path out_dir = recipe_.run.out_dir;
    fs::create_directories(out_dir);
    std::ofstream(out_dir / "recipe.yaml") << state_.recipe_yaml;
    metrics_ =
        std::make_unique<MetricsLog>((out_dir / "metrics.jsonl").string(), state_.step, true);
  });
}

// MFU denominator: the sum over ranks of each one's peak (trainer/metrics.h): on the CPU the
// measured sgemm (ranks measure together, so ranks sharing a machine measure their share of
// it), on a GPU its dense bf16 peak.
void Trainer::measure_peak() {
  peak_gflops_ = recipe_.log.peak_gflops;
  std::string peak_source = "log.peak_gflops";
  if (peak_gflops_ <= 0) {
    world_.barrier();
    const PeakEstimate peak = device_peak_gflops(device_, gpu_);
    peak_gflops_ = peak.gflops;
    peak_source = peak.source;
  }
  world_.allreduce_sum(&peak_gflops_, 1, "allreduce(peak GFLOP/s)");
  if (root_)
    std::printf("MFU peak: %.1f GFLOP/s over %d rank%s (%s)\n", peak_gflops_, world_.size(),
                world_.size() == 1 ? "" : "s", peak_source.c_str());
}

bool Trainer::train_step(int64_t step) {
  const auto t0 = std::chrono::steady_clock::now();
  Watchdog::set_context(cat("step ", step + 1));
  RankStep batch = batcher_->fetch(step);
  StepInput input;
  for (OwnedBatch& mb : batch.micro) {
    input.micro.push_back(mb.view(grid_.sp_group.get(), device_));
    input.target_count += mb.target_count();
  }
  const double lr = learning_rate(recipe_.optim, recipe_.schedule, recipe_.train.steps, step);
  const StepResult result = step_->run(input, step, lr, last_checkpoint_);
  state_.step = step + 1;
  state_.tokens_seen += recipe_.train.tokens_per_step;
  const double seconds = seconds_since(t0);
  slowest_step_s_ = std::max(slowest_step_s_, seconds);
  log_step(batch, result, lr, seconds);
  warn_if_sigterm_grace_short();
  if (val_batcher_ && recipe_.eval.every > 0 && state_.step % recipe_.eval.every == 0)
    validate(state_.step);

  if (result.stop_requested || state_.step == opt_.stop_at) {
    if (root_)
      std::printf("%s: saving a checkpoint after step %lld\n",
                  result.stop_requested ? "stop signal received" : "--stop-at reached",
                  static_cast<long long>(state_.step));
    save();
    if (root_) {
      // The overrides too: without them --resume would continue another run.
      std::string command = cat("ringtrain train ", opt_.recipe_path);
      for (const std::string& o : opt_.overrides) command += cat(" --set '", o, "'");
      std::printf("stopped at step %lld; continue with: %s --resume\n",
                  static_cast<long long>(state_.step), command.c_str());
    }
    return false;
  }
  const bool last = state_.step == recipe_.train.steps;
  const bool periodic = recipe_.checkpoint.every > 0 && state_.step % recipe_.checkpoint.every == 0;
  if (last || periodic) save();
  return true;
}

void Trainer::log_step(const RankStep& batch, const StepResult& result, double lr, double seconds) {
  if (!metrics_) return;
  const int64_t tokens = recipe_.train.tokens_per_step;
  StepRecord rec;
  rec.step = state_.step;
  rec.total_steps = recipe_.train.steps;
  rec.seq_len = batch.seq_len;
  rec.sequences = batch.sequences;
  rec.loss = result.loss;
  rec.lr = lr;
  rec.grad_norm = result.grad_norm;
  rec.seconds = seconds;
  rec.tokens_per_s = static_cast<double>(tokens) / seconds;
  rec.model_gflop = model_->flops_per_token(batch.seq_len) * tokens / 1e9;
  rec.attention_gflop = model_->attention_flops_per_token(batch.seq_len) * tokens / 1e9;
  rec.mfu = rec.model_gflop / seconds / peak_gflops_;
  rec.peak_rss_mib = result.peak_rss_mib;
  rec.arena_peak_mib = result.arena_peak_mib;
  const double per_step =
      seconds_since(run_start_) / static_cast<double>(state_.step - first_step_);
  rec.eta_seconds = per_step * static_cast<double>(recipe_.train.steps - state_.step);
  const bool print = state_.step % recipe_.log.every == 0 || state_.step == recipe_.train.steps ||
                     state_.step == first_step_ + 1;
  metrics_->step(rec, print);
}

void Trainer::validate(int64_t after_step) {
  const auto t0 = std::chrono::steady_clock::now();
  double sums[2] = {0, 0};  // loss sum, target count
  for (int64_t b = 0; b < recipe_.eval.batches; ++b)
    for (OwnedBatch& mb : val_batcher_->fetch(b).micro) {
      sums[0] += model_->forward_loss(mb.view(grid_.sp_group.get(), device_), *arena_);
      sums[1] += static_cast<double>(mb.target_count());
    }
  world_.allreduce_sum(sums, 2, "allreduce(validation loss)");
  if (metrics_) metrics_->eval(after_step, sums[0] / sums[1], seconds_since(t0));
}

void Trainer::save() {
  on_root(world_, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    last_checkpoint_ = save_checkpoint(checkpoint_dir_, state_, model_->params(), *optim_,
                                       recipe_.checkpoint.keep_last, fault_hook_for(state_.step));
    last_save_s_ = seconds_since(t0);
    std::printf("checkpoint %s\n", last_checkpoint_.c_str());
    std::fflush(stdout);
  });
  warn_if_sigterm_grace_short();
}

// SIGTERM to mpirun reaches the ranks with odls_base_sigkill_timeout left before SIGKILL
// (README, measured with OpenMPI 4.1): said once, early, when this run's slowest step and its
// checkpoint write need longer, so that the stop that would lose them is not the first sign.
void Trainer::warn_if_sigterm_grace_short() {
  const double grace = Watchdog::mpirun_sigterm_grace_seconds();
  const double needed = slowest_step_s_ + last_save_s_;
  if (!root_ || grace_warned_ || grace <= 0 || needed <= grace) return;
  grace_warned_ = true;
  std::printf(
      "warning: a SIGTERM to mpirun leaves the ranks %.0f s before SIGKILL (OpenMPI's "
      "odls_base_sigkill_timeout), and a step%s takes %.1f s here: such a stop would lose "
      "every step since the last checkpoint. Stop this run with kill -USR1 <mpirun pid> (every "
      "rank saves), or launch with OMPI_MCA_odls_base_sigkill_timeout=%.0f, or with srun\n",
      grace, last_save_s_ > 0 ? " and a checkpoint" : "", needed, std::ceil(2 * needed) + 1);
  std::fflush(stdout);
}

void Trainer::finish() {
  if (!root_) return;
  std::printf("done: %lld steps in %s | checkpoint %s | metrics %s\n",
              static_cast<long long>(recipe_.train.steps),
              format_duration(seconds_since(run_start_)).c_str(), last_checkpoint_.c_str(),
              metrics_->path().c_str());
}

}  // namespace rt
