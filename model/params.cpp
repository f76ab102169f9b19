#include "model/params.h"

#include <cmath>

#include "core/hash.h"
#include "kernels/ops.h"

namespace rt {

int ParameterSet::add(const std::string& name, Shape shape, bool decay) {
  RT_CHECK(!values_.defined(), "parameter ", name, " added after allocate()");
  RT_CHECK(find(name) < 0, "parameter ", name, " registered twice");
  params_.push_back({name, shape, decay, total_});
  // Each parameter starts on a 16-float boundary so that its view is 64-byte aligned.
  total_ += (shape.numel() + 15) / 16 * 16;
  return static_cast<int>(params_.size()) - 1;
}

void ParameterSet::allocate() {
  values_ = Tensor::zeros({total_});
  grads_ = Tensor::zeros({total_});
  if (keep_bf16_) bf16_values_ = Tensor::empty({total_}, DType::BF16);
  refresh_bf16_copy();
}

void ParameterSet::move_to(Device device) {
  values_ = to_device(values_, device);
  grads_ = to_device(grads_, device);
  if (bf16_values_.defined()) {
    bf16_values_ = Tensor::empty({total_}, DType::BF16, device);
    refresh_bf16_copy();
  }
}

void ParameterSet::keep_bf16_copy() {
  keep_bf16_ = true;
  if (!values_.defined() || bf16_values_.defined()) return;
  bf16_values_ = Tensor::empty({total_}, DType::BF16, values_.device());
  refresh_bf16_copy();
}

void ParameterSet::refresh_bf16_copy() {
  if (bf16_values_.defined()) ops::to_bf16(bf16_values_, values_);
}

Tensor ParameterSet::matmul_weight(int id) const {
  if (!bf16_values_.defined()) return value(id);
  const Parameter& p = params_.at(id);
  return bf16_values_.rows(p.offset, p.shape.numel()).view(p.shape);
}

Tensor ParameterSet::value(int id) const {
  const Parameter& p = params_.at(id);
  return values_.rows(p.offset, p.shape.numel()).view(p.shape);
}

Tensor ParameterSet::grad(int id) const {
  const Parameter& p = params_.at(id);
  return grads_.rows(p.offset, p.shape.numel()).view(p.shape);
}

int ParameterSet::find(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return static_cast<int>(i);
  return -1;
}

namespace {
double uniform01(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }
}  // namespace

uint64_t hash_name(const std::string& name) { return fnv1a64(name.data(), name.size()); }

void init_normal(const Tensor& x, double stddev, uint64_t seed, uint64_t stream) {
  float* p = x.f32();
  const int64_t n = x.numel();
  const uint64_t key = splitmix64(seed ^ splitmix64(stream));
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t pair = 0; pair < (n + 1) / 2; ++pair) {
    // Box-Muller on two independent uniforms drawn from the element's counter.
    const uint64_t a = splitmix64(key + 2 * static_cast<uint64_t>(pair));
    const uint64_t b = splitmix64(key + 2 * static_cast<uint64_t>(pair) + 1);
    const double r = std::sqrt(-2.0 * std::log(uniform01(a)));
    const double t = 2.0 * M_PI * uniform01(b);
    p[2 * pair] = static_cast<float>(stddev * r * std::cos(t));
    if (2 * pair + 1 < n) p[2 * pair + 1] = static_cast<float>(stddev * r * std::sin(t));
  }
}

void init_uniform(const Tensor& x, double lo, double hi, uint64_t seed, uint64_t stream) {
  float* p = x.f32();
  const int64_t n = x.numel();
  const uint64_t key = splitmix64(seed ^ splitmix64(stream));
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i)
    p[i] =
        static_cast<float>(lo + (hi - lo) * uniform01(splitmix64(key + static_cast<uint64_t>(i))));
}

void init_param_normal(const ParameterSet& params, int id, double stddev, uint64_t seed) {
  init_normal(params.value(id), stddev, seed, hash_name(params.all().at(id).name));
}

}  // namespace rt
