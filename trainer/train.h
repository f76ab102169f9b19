// `ringtrain train`: its options and entry point (trainer/trainer.h does the work).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rt {

struct TrainOptions {
  std::string recipe_path;
  std::vector<std::string> overrides;  // --set a.b=c
  bool resume = false;                 // --resume: continue from a checkpoint
  std::string resume_path;             // --resume=PATH (a file or a run/checkpoint directory),
                                       // or "auto": resume when a checkpoint exists
  bool overwrite = false;              // --overwrite: a new run may replace the checkpoints and
                                       // metrics of another run in run.out_dir
  bool dry_run = false;                // validate, print the plan, exit
  int64_t stop_at = 0;                 // --stop-at=N: save and exit after step N (0 = no)
};

// Returns the exit code; errors are thrown (see trainer/collective.h for how ranks agree).
int run_train(const TrainOptions& options);

// Ends every rank of the job with `code` when MPI runs with more than one rank; returns
// otherwise (a world of one simply exits).
void abort_job_if_parallel(int code);
int process_rank();  // world rank once training has started MPI, else 0

}  // namespace rt
