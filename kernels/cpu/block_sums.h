// Sums over the rows of a long sequence (the gradients of norm weights, biases, conv weights and
// Mamba-2's per-head scalars) run in fixed blocks of kRowBlock rows, each block's partial sum
// computed by one thread; the partials are then added in block order in double and added to
// the destination once, so that the result is the same for any thread count and its rounding
// does not grow with the number of blocks (a 1M-token sequence has 4096). The CUDA backend
// (add_block_partials in kernels/cuda/elementwise.cu) adds the same way.
#pragma once

#include <cstdint>
#include <vector>

namespace rt::cpu {

constexpr int64_t kRowBlock = 256;

inline int64_t row_blocks(int64_t T) { return (T + kRowBlock - 1) / kRowBlock; }

// dst[c * dst_stride] += sum over b of partial[(b * C + c) * stride], in block order.
template <class T>
void add_block_partials(float* dst, const T* partial, int64_t blocks, int64_t C, int64_t stride = 1,
                        int64_t dst_stride = 1) {
  std::vector<double> acc(static_cast<size_t>(C), 0.0);
  for (int64_t b = 0; b < blocks; ++b)  // rows of partials in memory order
    for (int64_t c = 0; c < C; ++c) acc[c] += partial[(b * C + c) * stride];
  for (int64_t c = 0; c < C; ++c) dst[c * dst_stride] += static_cast<float>(acc[c]);
}

}  // namespace rt::cpu
