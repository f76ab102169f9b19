// ParameterSet: every parameter of a model in one flat f32 buffer, its gradient in another,
// so that optimizer, gradient all-reduce, norms and checkpoints walk one array.
// Parameters are registered first (name, shape, weight decay or not), then allocated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.h"

namespace rt {

struct Parameter {
  std::string name;  // "layers.3.attn.wq"
  Shape shape;
  bool decay = true;   // AdamW weight decay applies (matrices yes; norm weights no)
  int64_t offset = 0;  // in the flat buffers
};

class ParameterSet {
 public:
  int add(const std::string& name, Shape shape, bool decay);
  void allocate();  // after the last add(); values and grads start at zero (on the CPU)
  // Moves values and gradients to `device` (after initialisation or a checkpoint load on the
  // host); views taken before the move keep pointing at the old storage.
  void move_to(Device device);

  // run.precision: bf16 (docs/DESIGN.md §3): the linear layers' GEMMs read a bf16 copy of the
  // weights, rounded from the f32 values, which stay the master copy (optimizer, checkpoints).
  // keep_bf16_copy() asks for it, before or after allocate() (which then makes it);
  // refresh_bf16_copy() follows every change of the values (allocate, move_to, a checkpoint
  // load and the optimizer step call it).
  void keep_bf16_copy();
  void refresh_bf16_copy();
  bool keeps_bf16_copy() const { return keep_bf16_; }
  // The weight a linear op multiplies with: the bf16 copy's view when kept, else value(id).
  Tensor matmul_weight(int id) const;

  const std::vector<Parameter>& all() const { return params_; }
  Tensor value(int id) const;
  Tensor grad(int id) const;
  Tensor flat_values() const { return values_; }
  Tensor flat_grads() const { return grads_; }
  int64_t numel() const { return total_; }
  int find(const std::string& name) const;  // -1 when absent

 private:
  std::vector<Parameter> params_;
  int64_t total_ = 0;
  Tensor values_, grads_;
  bool keep_bf16_ = false;
  Tensor bf16_values_;  // defined when keep_bf16_ and allocated
};

// Fills x with N(0, std^2) values that depend only on (seed, stream, index): the same on every
// rank and for any thread count.
void init_normal(const Tensor& x, double stddev, uint64_t seed, uint64_t stream);
// U(lo, hi), likewise counter-based.
void init_uniform(const Tensor& x, double lo, double hi, uint64_t seed, uint64_t stream);
// init_normal with the stream taken from the parameter's name.
void init_param_normal(const ParameterSet& params, int id, double stddev, uint64_t seed);
uint64_t hash_name(const std::string& name);

}  // namespace rt
