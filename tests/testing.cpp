#include "tests/testing.h"

#include <cmath>
#include <cstdlib>
#include <random>

#include <sys/wait.h>

namespace rt::testing {

ref::Vec decay_sums(const ref::Vec& dg, const ref::Vec& g, int64_t T, bool weighted) {
  const size_t width = dg.size() / static_cast<size_t>(T);
  ref::Vec out(width, 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (size_t i = 0; i < width; ++i)
      out[i] += dg[t * width + i] * (weighted ? g[t * width + i] : 1.0);
  return out;
}

Tensor random_tensor(Shape shape, uint64_t seed, float stddev) {
  Tensor t = Tensor::empty(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

std::vector<int32_t> random_ints(int64_t n, int32_t lo, int32_t hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Tensor int_tensor(const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, DType::I32);
  std::copy(values.begin(), values.end(), t.i32());
  return t;
}

ref::Vec random_vec(size_t n, uint64_t seed, double stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, stddev);
  ref::Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

ref::Vec to_vec(const Tensor& t) {
  ref::Vec v(t.numel());
  const float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = p[i];
  return v;
}

Tensor from_vec(const ref::Vec& v, Shape shape) {
  Tensor t = Tensor::empty(shape);
  RT_CHECK(static_cast<int64_t>(v.size()) == t.numel(), "from_vec size mismatch");
  for (size_t i = 0; i < v.size(); ++i) t.f32()[i] = static_cast<float>(v[i]);
  return t;
}

double rel_rms_error(const ref::Vec& got, const ref::Vec& want) {
  RT_CHECK(got.size() == want.size(), "rel_rms_error: sizes ", got.size(), " vs ", want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

double rel_rms_error(const Tensor& got, const ref::Vec& want) {
  return rel_rms_error(to_vec(got), want);
}

double max_fd_error(const std::function<double(const ref::Vec&)>& f, const ref::Vec& x,
                    const ref::Vec& grad, double step, int max_checks) {
  double gmax = 0;
  for (double g : grad) gmax = std::max(gmax, std::abs(g));
  const double floor = std::max(1e-3 * gmax, 1e-12);
  double worst = 0;
  size_t n = x.size();
  size_t stride = std::max<size_t>(1, n / static_cast<size_t>(max_checks));
  ref::Vec xp = x;
  for (size_t i = 0; i < n; i += stride) {
    double orig = xp[i];
    xp[i] = orig + step;
    double fp = f(xp);
    xp[i] = orig - step;
    double fm = f(xp);
    xp[i] = orig;
    double fd = (fp - fm) / (2 * step);
    double err = std::abs(fd - grad[i]) / std::max(std::abs(grad[i]), floor);
    worst = std::max(worst, err);
  }
  return worst;
}

ModelConfig tiny_model_config(const std::string& pattern, bool tied_embeddings) {
  ModelConfig c;
  c.pattern = pattern;
  c.vocab_size = 23;
  c.d_model = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.mlp_hidden = 48;
  c.tied_embeddings = tied_embeddings;
  c.init_std = 0.3;
  // GLA: 4 heads of dk 4, dv 8; Mamba-2: 4 heads of 16 in 2 groups, d_state 8; chunks of 16
  // so that a 32-token sequence spans two.
  c.mamba_d_state = 8;
  c.mamba_headdim = 16;
  c.mamba_ngroups = 2;
  c.glr_chunk = 16;
  c.resolve();
  return c;
}

int run_command(const std::string& command) {
  int status = std::system(command.c_str());
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace rt::testing
