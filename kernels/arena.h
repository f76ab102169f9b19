// Arena: the bump allocator activations live in. Allocation is a pointer bump; memory is given
// back in stack order (mark/release) or all at once (reset, once per step). The peak is
// recorded, so activation memory is a measured figure, not a surprise.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/tensor.h"

namespace rt {

class Arena {
 public:
  struct Mark {
    size_t block = 0;
    size_t offset = 0;
    size_t in_use = 0;
  };

  explicit Arena(Device device = Device::CPU, size_t initial_bytes = 0);
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor alloc(Shape shape, DType dtype = DType::F32);  // uninitialised
  Tensor zeros(Shape shape, DType dtype = DType::F32);

  Mark mark() const { return {current_, offset_, in_use_}; }
  void release(const Mark& m);  // frees everything allocated after m
  // Frees everything. If the step needed several blocks, they become one block of the total
  // size, so the next step runs in a single block.
  void reset();

  size_t in_use() const { return in_use_; }
  size_t peak() const { return peak_; }
  size_t capacity() const;
  void reset_peak() { peak_ = in_use_; }
  Device device() const { return device_; }

 private:
  struct Block {
    std::shared_ptr<void> memory;
    size_t size = 0;
  };
  Device device_;
  std::vector<Block> blocks_;
  size_t current_ = 0;  // block being bumped
  size_t offset_ = 0;   // bytes used in blocks_[current_]
  size_t in_use_ = 0;
  size_t peak_ = 0;
};

}  // namespace rt
