#include "trainer/metrics.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/check.h"
#include "kernels/device.h"
#include "kernels/ops.h"

namespace rt {

namespace {

int64_t step_of_record(const std::string& line) {
  const size_t k = line.find("\"step\":");
  if (k == std::string::npos) return -1;
  return std::atoll(line.c_str() + k + 7);
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step, bool enabled) : path_(path) {
  if (!enabled) return;
  if (resume_step > 0) {
    std::ifstream in(path);
    std::vector<std::string> keep;
    for (std::string line; std::getline(in, line);)
      if (step_of_record(line) <= resume_step) keep.push_back(line);
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : keep) out << l << "\n";
  } else {
    std::ofstream(path, std::ios::trunc).close();
  }
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw RunError(cat("cannot open the metrics log ", path), 1);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::step(const StepRecord& r, bool print) {
  if (!file_) return;
  const double tokens = static_cast<double>(r.seq_len * r.sequences);
  // %.17g keeps every bit of the loss: resumed runs are compared on these records.
  std::fprintf(file_,
               "{\"step\":%lld,\"seq_len\":%lld,\"sequences\":%lld,\"tokens\":%.0f,"
               "\"loss\":%.17g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.3f,"
               "\"tokens_per_s\":%.1f,\"mfu\":%.5f,\"model_gflop\":%.3f,\"attention_gflop\":%.3f,"
               "\"peak_rss_mib\":%.1f,\"arena_peak_mib\":%.1f}\n",
               static_cast<long long>(r.step), static_cast<long long>(r.seq_len),
               static_cast<long long>(r.sequences), tokens, r.loss, r.lr, r.grad_norm,
               r.seconds * 1e3, r.tokens_per_s, r.mfu, r.model_gflop, r.attention_gflop,
               r.peak_rss_mib, r.arena_peak_mib);
  std::fflush(file_);
  if (!print) return;
  const int width = static_cast<int>(std::to_string(r.total_steps).size());
  std::printf(
      "step %*lld/%lld | %lldx%lld tok | loss %.4f | lr %.2e | gnorm %.3f | %.0f ms | "
      "%.1fk tok/s | MFU %.1f%% | mem %.0f MiB | ETA %s\n",
      width, static_cast<long long>(r.step), static_cast<long long>(r.total_steps),
      static_cast<long long>(r.sequences), static_cast<long long>(r.seq_len), r.loss, r.lr,
      r.grad_norm, r.seconds * 1e3, r.tokens_per_s / 1e3, r.mfu * 100, r.peak_rss_mib,
      format_duration(r.eta_seconds).c_str());
  std::fflush(stdout);
}

void MetricsLog::eval(int64_t step, double val_loss, double seconds) {
  if (!file_) return;
  std::fprintf(file_, "{\"step\":%lld,\"val_loss\":%.17g,\"eval_ms\":%.3f}\n",
               static_cast<long long>(step), val_loss, seconds * 1e3);
  std::fflush(file_);
  std::printf("eval after step %lld | val loss %.4f | %.0f ms\n", static_cast<long long>(step),
              val_loss, seconds * 1e3);
  std::fflush(stdout);
}

double measure_sgemm_gflops(Device device) {
  const int64_t n = 2048;
  Tensor a = Tensor::empty({n, n}, DType::F32, device),
         b = Tensor::empty({n, n}, DType::F32, device);
  Tensor c = Tensor::empty({n, n}, DType::F32, device);
  ops::fill(a, 0.5f);
  ops::fill(b, 0.25f);
  ops::matmul(c, a, false, b, true);  // warm-up: thread pool, page faults, GPU clocks
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    device_synchronize(device);
    const auto t0 = std::chrono::steady_clock::now();
    ops::matmul(c, a, false, b, true);
    device_synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

PeakEstimate device_peak_gflops(Device device, int gpu) {
  if (device == Device::CPU) return {measure_sgemm_gflops(), "measured sgemm"};
  const std::string name = cuda_device_name(gpu);
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  // Dense bf16 tensor-core peaks (not the 2:4 sparse figures): SXM H100 and H200 989.4,
  // H100 NVL 835, H100 PCIe 756 TFLOP/s.
  if (has("H200")) return {989.4e3, name + ", dense bf16 peak"};
  if (has("H100") && has("NVL")) return {835e3, name + ", dense bf16 peak"};
  if (has("H100") && has("PCIe")) return {756e3, name + ", dense bf16 peak"};
  if (has("H100")) return {989.4e3, name + ", dense bf16 peak (SXM)"};
  return {measure_sgemm_gflops(device), name + ", measured f32 GEMM (no peak on record)"};
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60));
  return buf;
}

}  // namespace rt
