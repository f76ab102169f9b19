// Helpers shared by the test suites: seeded random tensors, conversions to the double
// references, and the relative RMS error fla uses to compare kernels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "model/config.h"
#include "tests/reference/naive.h"

namespace rt::testing {

Tensor random_tensor(Shape shape, uint64_t seed, float stddev = 1.0f);
std::vector<int32_t> random_ints(int64_t n, int32_t lo, int32_t hi, uint64_t seed);
Tensor int_tensor(const std::vector<int32_t>& values);
ref::Vec random_vec(size_t n, uint64_t seed, double stddev = 1.0);

ref::Vec to_vec(const Tensor& t);
Tensor from_vec(const ref::Vec& v, Shape shape);

// The sums over t the layers make of the recurrence's gate gradient dg [T, width]: per head (or
// head and channel) sum_t dg_t * g_t (weighted: Mamba-2's A_log, g = -exp(A_log) dt) or sum_t
// dg_t (every bias behind the decay: dt_bias, GLA's gate bias).
ref::Vec decay_sums(const ref::Vec& dg, const ref::Vec& g, int64_t T, bool weighted);

// sqrt(mean((got - want)^2)) / sqrt(mean(want^2))
double rel_rms_error(const ref::Vec& got, const ref::Vec& want);
double rel_rms_error(const Tensor& got, const ref::Vec& want);

// Largest relative error between the analytic gradient of a scalar function and its central
// finite difference, over at most max_checks coordinates (spread over the whole input).
// The error of coordinate i is |fd - g_i| / max(|g_i|, 1e-3 * max_j |g_j|): a coordinate whose
// gradient is a thousand times below the largest is judged against that floor, since the
// difference quotient's rounding error (~1e-16 |f| / step) is absolute, not relative.
double max_fd_error(const std::function<double(const ref::Vec&)>& f, const ref::Vec& x,
                    const ref::Vec& grad, double step = 1e-5, int max_checks = 64);

// Runs a program and returns its exit status; output goes to the given file.
int run_command(const std::string& command);

// The small model of the model and parallel suites: vocabulary 23, d_model 32, 4 heads (2 kv
// heads) of 8, MLP 48, small GLA and Mamba-2 layers, and init std 0.3 so that gradients stand
// well above f32 rounding.
ModelConfig tiny_model_config(const std::string& pattern, bool tied_embeddings = true);

}  // namespace rt::testing
