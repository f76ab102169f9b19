// The inputs of the GLR tests (CPU in test_glr.cpp, CUDA in test_cuda_glr.cpp): random q, k, v,
// dout, h0, dh_final and a decay g = logsigmoid(x) / normalizer, all on the CPU; and the
// long-sequence comparison with the float64 reference.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>

#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "tests/reference/naive.h"
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

// The backward's gradients from zero h0 and dh_final against the float64 reference, as relative
// RMS errors: dq, dk, dv, dg and the two sums the layers make of dg (decay_sums: weighted by g,
// and plain). For the long-sequence tests and bench/glr_accuracy.
struct GlrErrors {
  double dq, dk, dv, dg, sum_dg_g, sum_dg;
  double backward_ms;  // the f32 backward's wall time
};

inline GlrErrors glr_errors_against_float64(const GlrCase& c, uint64_t seed) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  GlrInputs in(c, seed);
  Tensor states = Tensor::empty({(c.T + c.chunk - 1) / c.chunk + 1, c.H, c.dk, c.dv});
  ops::glr_forward(Tensor(), Tensor(), states, in.q, in.k, in.v, in.g, Tensor(), scale, c.chunk);
  Tensor dq = Tensor::empty(in.q.shape()), dk = Tensor::empty(in.k.shape()),
         dv = Tensor::empty(in.v.shape()), dg = Tensor::empty(in.g.shape());
  const auto t0 = std::chrono::steady_clock::now();
  ops::glr_backward(dq, dk, dv, dg, Tensor(), in.q, in.k, in.v, in.g, states, in.dout, Tensor(),
                    scale, c.chunk);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  const ref::GlrShape s{c.T, c.H, c.Hg, c.dk, c.dv, c.vector_decay, scale};
  const ref::Vec g = to_vec(in.g), zero(static_cast<size_t>(c.H) * c.dk * c.dv, 0.0);
  ref::Vec dq_ref, dk_ref, dv_ref, dg_ref, dh0_ref;
  ref::glr_backward(to_vec(in.q), to_vec(in.k), to_vec(in.v), g, zero, to_vec(in.dout), zero, s,
                    dq_ref, dk_ref, dv_ref, dg_ref, dh0_ref);
  const ref::Vec dg_got = to_vec(dg);
  return {rel_rms_error(dq, dq_ref),
          rel_rms_error(dk, dk_ref),
          rel_rms_error(dv, dv_ref),
          rel_rms_error(dg_got, dg_ref),
          rel_rms_error(decay_sums(dg_got, g, c.T, true), decay_sums(dg_ref, g, c.T, true)),
          rel_rms_error(decay_sums(dg_got, g, c.T, false), decay_sums(dg_ref, g, c.T, false)),
          ms};
}

}  // namespace rt::testing
