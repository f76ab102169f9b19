// Layer: one symbol of the pattern string, the mixing function inside a pre-norm residual
// block (model.cpp does h += layer(rmsnorm(h))). Each layer owns its parameter ids and the
// activations its last forward left in the arena for its backward.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/check.h"
#include "kernels/arena.h"
#include "kernels/tensor.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/params.h"

namespace rt {

struct LayerContext {
  const ModelConfig& config;
  const ParameterSet& params;
  const Tensor& rope;          // [T, head_dim/2, 2] for this batch's positions
  const SequenceContext& seq;  // how the rows form sequences (attention needs it)
};

// What a layer keeps between the tokens of a generation (attention: the K/V cache).
struct DecodeState {
  virtual ~DecodeState() = default;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // y [T, C] = layer(x [T, C]); what backward needs stays in the arena. An undefined y skips
  // the output projection (recompute in backward only needs the saved activations).
  virtual void forward(const Tensor& y, const Tensor& x, const LayerContext& ctx, Arena& arena) = 0;
  // dx [T, C] is overwritten; parameter gradients accumulate. Runs after forward on the same x.
  virtual void backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const LayerContext& ctx, Arena& arena) = 0;
  // For T tokens laid out by `layout`: floats this layer keeps from forward to backward, the
  // floats its forward uses only while it runs, and the extra floats its backward needs.
  // The activation-memory estimate of `ringtrain train --dry-run` is built from these.
  virtual int64_t saved_floats(int64_t T, const SequenceLayout& layout) const = 0;
  virtual int64_t forward_floats(int64_t T, const SequenceLayout& layout) const = 0;
  virtual int64_t backward_floats(int64_t T, const SequenceLayout& layout) const = 0;
  // Forward FLOPs per token of this layer's GEMMs and attention, for MFU accounting.
  virtual double forward_flops_per_token(int64_t seq_len) const = 0;
  // The part of them in attention scores (QK^T and PV over the causal context); 0 for layers
  // without softmax attention.
  virtual double score_flops_per_token(int64_t) const { return 0.0; }
  // Initial values: input projections N(0, std), the projection back into the residual stream
  // N(0, residual_std), and whatever the layer's own parameters need. A function of the seed.
  virtual void init_parameters(const ParameterSet& params, uint64_t seed, double std,
                               double residual_std) const = 0;

  // Generation: y [T, C] = layer(x [T, C]) for the next T tokens, at positions pos.., given the
  // state the earlier tokens left (made by decode_state for up to max_len tokens; null for a
  // layer that keeps none). ctx.rope holds their rotations. Every kind decodes; a new kind
  // that does not yet keeps these defaults, which Model::decode_states checks.
  virtual bool decodes() const { return false; }
  virtual std::unique_ptr<DecodeState> decode_state(int64_t) const { return nullptr; }
  virtual void decode(const Tensor&, const Tensor&, int64_t, DecodeState*, const LayerContext&,
                      Arena&) {
    RT_CHECK(false, "decode of a layer kind that cannot");
  }
};

}  // namespace rt
