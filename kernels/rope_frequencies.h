// RoPE's frequencies, with the context-extension scalings of Hugging Face's rope_type
// (transformers' modeling_rope_utils), computed in double by the CPU and the CUDA kernels alike:
//   default   inv_freq[i] = theta^(-2i/D)                      (ABF: a larger theta)
//   linear    inv_freq / factor                                (position interpolation)
//   dynamic   theta' = theta (factor L / L0 - (factor - 1))^(D / (D - 2)) for a sequence of
//             L > L0 tokens (NTK-aware; the default below L0)
//   yarn      interpolation (inv_freq / factor) blended with extrapolation by a linear ramp
//             between the dims that turn beta_fast and beta_slow times over L0 (rounded out),
//             and cos, sin multiplied by attention_factor (0.1 ln(factor) + 1 by default)
//   llama3    wavelengths above L0 / low_freq_factor divided by factor, below
//             L0 / high_freq_factor kept, smoothly blended in between
// L0 is the original context (original_max_position_embeddings; dynamic: max_position_embeddings).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/host_device.h"

namespace rt {

enum class RopeKind : int32_t { Default, Linear, Dynamic, Yarn, Llama3 };

struct RopeFrequencies {
  RopeKind kind = RopeKind::Default;
  double theta = 10000.0;
  double factor = 1.0;
  double original_context = 0;                           // L0
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  double beta_fast = 32.0, beta_slow = 1.0;              // yarn
  double attention_factor = 1.0;                         // cos and sin are multiplied by it (yarn)
  double seq_len = 0;  // dynamic: the length of the sequence the table is for
};

// The inverse frequency of pair i of a head of D dims.
RT_HOST_DEVICE inline double rope_inv_freq(const RopeFrequencies& f, int64_t i, int64_t D) {
  const double dim = static_cast<double>(D), exponent = 2.0 * static_cast<double>(i) / dim;
  constexpr double kPi = 3.14159265358979323846;
  switch (f.kind) {
    case RopeKind::Default: return pow(f.theta, -exponent);
    case RopeKind::Linear: return pow(f.theta, -exponent) / f.factor;
    case RopeKind::Dynamic: {
      const double L = f.seq_len > f.original_context ? f.seq_len : f.original_context;
      const double base =
          f.theta * pow(f.factor * L / f.original_context - (f.factor - 1.0), dim / (dim - 2.0));
      return pow(base, -exponent);
    }
    case RopeKind::Yarn: {
      const double extrapolation = pow(f.theta, -exponent),
                   interpolation = extrapolation / f.factor;
      // The dim that turns `rotations` times over L0, as transformers' find_correction_dim.
      auto correction_dim = [&](double rotations) {
        return dim * log(f.original_context / (rotations * 2.0 * kPi)) / (2.0 * log(f.theta));
      };
      double low = floor(correction_dim(f.beta_fast)), high = ceil(correction_dim(f.beta_slow));
      low = low > 0 ? low : 0;
      high = high < dim - 1 ? high : dim - 1;
      if (low == high) high += 0.001;
      double ramp = (static_cast<double>(i) - low) / (high - low);
      ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
      const double keep = 1.0 - ramp;  // the share of extrapolation
      return interpolation * (1.0 - keep) + extrapolation * keep;
    }
    case RopeKind::Llama3: {
      const double inv = pow(f.theta, -exponent), wavelen = 2.0 * kPi / inv;
      const double low_wavelen = f.original_context / f.low_freq_factor,
                   high_wavelen = f.original_context / f.high_freq_factor;
      if (wavelen > low_wavelen) return inv / f.factor;
      if (wavelen < high_wavelen) return inv;
      const double smooth = (f.original_context / wavelen - f.low_freq_factor) /
                            (f.high_freq_factor - f.low_freq_factor);
      return (1.0 - smooth) * inv / f.factor + smooth * inv;
    }
  }
  return pow(f.theta, -exponent);
}

}  // namespace rt
