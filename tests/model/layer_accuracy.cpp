#include "tests/model/layer_accuracy.h"

#include <memory>

#include "core/check.h"
#include "kernels/arena.h"
#include "model/gla.h"
#include "model/mamba2.h"
#include "tests/reference/naive_layers.h"
#include "tests/testing.h"

namespace rt::testing {

namespace {

constexpr const char* kPrefix = "layer";

ref::Vec param(const ParameterSet& params, const std::string& name, bool grad) {
  const int id = params.find(cat(kPrefix, ".", name));
  RT_CHECK(id >= 0, "layer_accuracy: no parameter ", name);
  return to_vec(grad ? params.grad(id) : params.value(id));
}

struct Named {
  std::string name;
  ref::Vec ref::GlaParams::*gla;
  ref::Vec ref::Mamba2Params::*mamba;
};

const std::vector<Named>& gla_names() {
  static const std::vector<Named> names{{"wq", &ref::GlaParams::wq, nullptr},
                                        {"wk", &ref::GlaParams::wk, nullptr},
                                        {"wv", &ref::GlaParams::wv, nullptr},
                                        {"wg", &ref::GlaParams::wg, nullptr},
                                        {"w_gate1", &ref::GlaParams::w_gate1, nullptr},
                                        {"w_gate2", &ref::GlaParams::w_gate2, nullptr},
                                        {"b_gate", &ref::GlaParams::b_gate, nullptr},
                                        {"norm", &ref::GlaParams::norm, nullptr},
                                        {"wo", &ref::GlaParams::wo, nullptr}};
  return names;
}

const std::vector<Named>& mamba_names() {
  static const std::vector<Named> names{{"in_proj", nullptr, &ref::Mamba2Params::in_proj},
                                        {"conv_w", nullptr, &ref::Mamba2Params::conv_w},
                                        {"conv_b", nullptr, &ref::Mamba2Params::conv_b},
                                        {"dt_bias", nullptr, &ref::Mamba2Params::dt_bias},
                                        {"A_log", nullptr, &ref::Mamba2Params::A_log},
                                        {"D", nullptr, &ref::Mamba2Params::D},
                                        {"norm", nullptr, &ref::Mamba2Params::norm},
                                        {"out_proj", nullptr, &ref::Mamba2Params::out_proj}};
  return names;
}

// This rank's rows of a [T, C] tensor under the layout.
Tensor local_rows(const Tensor& global, const SequenceLayout& layout) {
  const int64_t C = global.size(1);
  Tensor out = Tensor::empty({layout.local_len, C});
  for (const Segment& c : layout.segments)
    copy_tensor(out.rows(c.local_offset, c.length), global.rows(c.global_start, c.length));
  return out;
}

}  // namespace

double long_sequence_tolerance(const std::string& name) {
  return name == "A_log" || name == "dt_bias" || name == "b_gate" ? 1e-4 : 2e-6;
}

std::vector<GradientError> layer_gradient_errors(char symbol, const ModelConfig& cfg, int64_t T,
                                                 Communicator* sp_group, uint64_t seed) {
  const int sp = sp_group ? sp_group->size() : 1, rank = sp_group ? sp_group->rank() : 0;
  ParameterSet params;
  std::unique_ptr<Layer> layer;
  if (symbol == 'G')
    layer = std::make_unique<GlaLayer>(kPrefix, cfg, params);
  else
    layer = std::make_unique<Mamba2Layer>(kPrefix, cfg, params);
  params.allocate();
  layer->init_parameters(params, seed, cfg.init_std, cfg.init_std);

  const Tensor x = random_tensor({T, cfg.d_model}, seed + 1),
               dy = random_tensor({T, cfg.d_model}, seed + 2);
  const SequenceLayout layout = SequenceLayout::zigzag(T, sp, rank);
  const Tensor x_mine = local_rows(x, layout), dy_mine = local_rows(dy, layout);
  Tensor y = Tensor::empty(x_mine.shape()), dx = Tensor::empty(x_mine.shape());
  const Tensor rope;
  const SequenceContext seq{&layout, 1, sp_group};
  const LayerContext ctx{cfg, params, rope, seq};
  Arena arena;
  layer->forward(y, x_mine, ctx, arena);
  layer->backward(dx, dy_mine, x_mine, ctx, arena);
  if (sp_group)
    sp_group->allreduce_sum(params.flat_grads().f32(), params.flat_grads().numel(),
                            "allreduce(gradients)");
  if (rank != 0) return {};

  std::vector<GradientError> errors;
  const ref::Vec xv = to_vec(x), dyv = to_vec(dy);
  ref::Vec dx_ref;
  const int Ti = static_cast<int>(T), C = static_cast<int>(cfg.d_model);
  if (symbol == 'G') {
    const int H = static_cast<int>(cfg.gla_heads);
    const ref::GlaShape s{Ti,
                          C,
                          H,
                          static_cast<int>(cfg.gla_key_dim()) / H,
                          static_cast<int>(cfg.gla_value_dim()) / H,
                          static_cast<int>(GlaLayer::kGateRank),
                          GlaLayer::kGateNormalizer,
                          cfg.norm_eps};
    ref::GlaParams p, grads;
    for (const Named& n : gla_names()) p.*n.gla = param(params, n.name, false);
    ref::gla_layer_backward(xv, dyv, p, s, dx_ref, grads);
    for (const Named& n : gla_names())
      errors.push_back({n.name, rel_rms_error(param(params, n.name, true), grads.*n.gla)});
  } else {
    const ref::Mamba2Shape s{Ti,
                             C,
                             static_cast<int>(cfg.mamba_d_inner()),
                             static_cast<int>(cfg.mamba_heads()),
                             static_cast<int>(cfg.mamba_headdim),
                             static_cast<int>(cfg.mamba_d_state),
                             static_cast<int>(cfg.mamba_ngroups),
                             static_cast<int>(cfg.mamba_conv_width),
                             cfg.norm_eps};
    ref::Mamba2Params p, grads;
    for (const Named& n : mamba_names()) p.*n.mamba = param(params, n.name, false);
    ref::mamba2_layer_backward(xv, dyv, p, s, dx_ref, grads);
    for (const Named& n : mamba_names())
      errors.push_back({n.name, rel_rms_error(param(params, n.name, true), grads.*n.mamba)});
  }
  if (sp == 1) errors.push_back({"dx", rel_rms_error(dx, dx_ref)});
  return errors;
}

}  // namespace rt::testing
