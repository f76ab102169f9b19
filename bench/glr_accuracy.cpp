// The recurrence's gradients against the float64 token-by-token reference, at growing lengths:
// what bench/RESULTS.md's "error against T" table is made of.
//   glr_accuracy [--lengths 1024,4096,...] [--chunk 64] [--shapes gla,mamba2]
// For every shape, decay strength and length it prints the relative RMS error of dq, dk, dv
// and dg, and of the per-head (per-channel) sums the layers make of dg:
//   sum_t dg_t g_t   Mamba-2's A_log gradient (g = -exp(A_log) dt, so dg/dA_log = g),
//   sum_t dg_t       the sum every bias behind the decay sees (dt_bias, GLA's gate bias),
// each as ||got - ref|| / ||ref|| over the heads (channels), and the f32 backward's time.
// Shapes are small (the reference is a plain double loop) but keep the two decay kinds:
//   gla:    per-channel decay, 2 heads, dk 32, dv 64
//   mamba2: one decay per head, 4 heads sharing q/k (1 group), d_state 32, headdim 32
// Decay g = logsigmoid(x) / normalizer, x ~ N(0, 4): normalizer 1 (strong, ~-0.7 a step), 16
// (GLA's, ~-0.04 a step) and 1000 (weak, ~-7e-4: a memory of ~1500 tokens, where the state and its
// gradient are largest).
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "tests/kernels/glr_inputs.h"

namespace rt {
namespace {

using testing::GlrCase;

void run(const char* name, const GlrCase& c) {
  const testing::GlrErrors e = testing::glr_errors_against_float64(c, 7);
  std::printf("%-7s %6.0f %8d | %9.2e %9.2e %9.2e %9.2e | %9.2e %9.2e | %8.1f\n", name,
              c.normalizer, c.T, e.dq, e.dk, e.dv, e.dg, e.sum_dg_g, e.sum_dg, e.backward_ms);
  std::fflush(stdout);
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace
}  // namespace rt

int main(int argc, char** argv) {
  std::vector<int> lengths{1024, 4096, 16384, 32768, 65536, 131072};
  int64_t chunk = 64;
  std::string shapes = "gla,mamba2";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--lengths")
      lengths = rt::parse_list(argv[i + 1]);
    else if (flag == "--chunk")
      chunk = std::atoll(argv[i + 1]);
    else if (flag == "--shapes")
      shapes = argv[i + 1];
    else {
      std::fprintf(stderr, "glr_accuracy: unknown flag %s (valid: --lengths, --chunk, --shapes)\n",
                   argv[i]);
      return 2;
    }
  }
  std::printf("chunk %lld; errors relative to the float64 reference\n",
              static_cast<long long>(chunk));
  std::printf("%-7s %6s %8s | %9s %9s %9s %9s | %9s %9s | %8s\n", "shape", "norm", "T", "dq", "dk",
              "dv", "dg", "sum dg*g", "sum dg", "bwd ms");
  for (double normalizer : {1.0, 16.0, 1000.0})
    for (int T : lengths) {
      if (shapes.find("gla") != std::string::npos)
        rt::run("gla", {T, 2, 2, 32, 64, true, chunk, normalizer, false, false});
      if (shapes.find("mamba2") != std::string::npos)
        rt::run("mamba2", {T, 4, 1, 32, 32, false, chunk, normalizer, false, false});
    }
  return 0;
}
