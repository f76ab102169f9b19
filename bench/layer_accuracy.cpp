// A GLA or Mamba-2 layer's parameter gradients against the float64 layer reference, at growing
// lengths, on one rank or over an sp group (every rank of the world in one sequence):
//   [mpirun -np SP] layer_accuracy [--layers M,G] [--lengths 4096,131072] [--chunk 64]
// The model is the tests' small one (tests/testing.cpp: d_model 32; GLA 4 heads of dk 4, dv 8;
// Mamba-2 4 heads of 16 in 2 groups, d_state 8), its own initialisation (Mamba-2's dt from
// [1e-3, 0.1] and A from [1, 16]: decays from -1e-3 to -1.6 a token), x and dy ~ N(0, 1).
// Rank 0 prints the relative RMS error of every parameter gradient (and dx on one rank).
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "tests/model/layer_accuracy.h"
#include "tests/testing.h"

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> layers{"M", "G"}, lengths{"4096", "32768", "131072"};
  int64_t chunk = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--layers")
      layers = split(argv[i + 1]);
    else if (flag == "--lengths")
      lengths = split(argv[i + 1]);
    else if (flag == "--chunk")
      chunk = std::stoll(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "layer_accuracy: unknown flag %s (valid: --layers, --lengths, --chunk)\n",
                   argv[i]);
      return 2;
    }
  }
  auto world = rt::mpi_world();
  rt::Communicator* group = world->size() > 1 ? world.get() : nullptr;
  if (world->rank() == 0)
    std::printf("sp %d, chunk %lld\n", world->size(), static_cast<long long>(chunk));
  for (const std::string& layer : layers)
    for (const std::string& length : lengths) {
      rt::ModelConfig cfg = rt::testing::tiny_model_config(layer);
      cfg.glr_chunk = chunk;
      const auto errors =
          rt::testing::layer_gradient_errors(layer[0], cfg, std::stoll(length), group, 3);
      if (world->rank() != 0) continue;
      std::printf("%s T %8s |", layer.c_str(), length.c_str());
      for (const auto& e : errors) std::printf(" %s %.2e", e.name.c_str(), e.error);
      std::printf("\n");
      std::fflush(stdout);
    }
  return 0;
}
