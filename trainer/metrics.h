// Per-step progress: one console line on rank 0 and one JSONL record per step, with loss,
// learning rate, grad norm, time, tokens/s, MFU, memory and ETA. FLOP accounting is the
// model's (model FLOPs, recompute not counted); the MFU denominator is the measured sgemm
// throughput on CPU (or log.peak_gflops).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "kernels/tensor.h"

namespace rt {

struct StepRecord {
  int64_t step = 0;  // completed steps after this one (1-based)
  int64_t total_steps = 0;
  int64_t seq_len = 0, sequences = 0;  // global batch shape
  double loss = 0, lr = 0, grad_norm = 0;
  double seconds = 0;
  double tokens_per_s = 0;
  double mfu = 0;              // fraction of the peak
  double model_gflop = 0;      // model FLOPs of the step (forward + backward)
  double attention_gflop = 0;  // the attention-score part of them (QK^T, PV and backward)
  double peak_rss_mib = 0;     // the largest rank's high-water mark
  double arena_peak_mib = 0;   // the largest rank's activation arena peak
  double eta_seconds = 0;
};

class MetricsLog {
 public:
  // Opens out_dir/metrics.jsonl for appending; on resume, records after `resume_step` (from a
  // run that went on past its last checkpoint) are dropped first so each step appears once.
  MetricsLog(const std::string& path, int64_t resume_step, bool enabled);
  ~MetricsLog();
  void step(const StepRecord& r, bool print);
  void eval(int64_t step, double val_loss, double seconds);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Measured single-precision GEMM throughput of this process on `device` (GFLOP/s): a few
// 2048^3 sgemm calls through the kernels' GEMM (with its threads on the CPU).
double measure_sgemm_gflops(Device device = Device::CPU);

// The MFU denominator of one rank and where it comes from. CPU: the measured sgemm. GPU: the
// dense bf16 peak of its kind where known (989 TFLOP/s for H100 and H200 SXM, not the sparse
// figure), else the measured f32 GEMM. gpu: the ordinal in use (run.device: cuda).
struct PeakEstimate {
  double gflops = 0;
  std::string source;
};
PeakEstimate device_peak_gflops(Device device, int gpu);
double peak_rss_mib();
std::string format_duration(double seconds);  // "2m13s", "1h04m"

}  // namespace rt
