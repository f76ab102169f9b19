// The inputs of the GLR tests (CPU in test_glr.cpp, CUDA in test_cuda_glr.cpp): random q, k, v,
// dout, h0, dh_final and a decay g = logsigmoid(x) / normalizer, all on the CPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/tensor.h"
#include "tests/testing.h"

namespace rt::testing {

struct GlrCase {
  int T, H, Hg, dk, dv;
  bool vector_decay;
  int64_t chunk;
  double normalizer;  // g = logsigmoid(x) / normalizer: 16 weak (GLA's), 1 moderate, 0.1 strong
  bool with_h0 = true, with_dh_final = true;
};

struct GlrInputs {
  GlrInputs(const GlrCase& c, uint64_t seed) {
    const int gw = c.vector_decay ? c.dk : 1;
    q = random_tensor({c.T, c.Hg, c.dk}, seed);
    k = random_tensor({c.T, c.Hg, c.dk}, seed + 1);
    v = random_tensor({c.T, c.H, c.dv}, seed + 2);
    g = c.vector_decay ? Tensor::empty({c.T, c.H, c.dk}) : Tensor::empty({c.T, c.H});
    const ref::Vec x = random_vec(static_cast<size_t>(c.T) * c.H * gw, seed + 3, 2.0);
    for (size_t i = 0; i < x.size(); ++i)
      g.f32()[i] = static_cast<float>(-std::log1p(std::exp(-x[i])) / c.normalizer);
    if (c.with_h0) h0 = random_tensor({c.H, c.dk, c.dv}, seed + 4);
    dout = random_tensor({c.T, c.H, c.dv}, seed + 5);
    if (c.with_dh_final) dh_final = random_tensor({c.H, c.dk, c.dv}, seed + 6);
  }
  Tensor q, k, v, g, h0, dout, dh_final;
};

}  // namespace rt::testing
