#include "kernels/arena.h"

#include <algorithm>

#include "kernels/device.h"

namespace rt {

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kMinBlock = size_t(16) << 20;
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Arena::Arena(Device device, size_t initial_bytes) : device_(device) {
  if (initial_bytes > 0) {
    Device d = device_;
    blocks_.push_back(
        {std::shared_ptr<void>(device_alloc(d, initial_bytes), [d](void* p) { device_free(d, p); }),
         initial_bytes});
  }
}

Tensor Arena::alloc(Shape shape, DType dtype) {
  size_t bytes =
      round_up(std::max<size_t>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), 1));
  // Find room in the current block or a later one (kept from earlier steps), else add one.
  while (current_ < blocks_.size() && offset_ + bytes > blocks_[current_].size) {
    in_use_ += blocks_[current_].size - offset_;  // the tail of a block is lost until release
    ++current_;
    offset_ = 0;
  }
  if (current_ == blocks_.size()) {
    size_t size = std::max(bytes, kMinBlock);
    Device d = device_;
    blocks_.push_back(
        {std::shared_ptr<void>(device_alloc(d, size), [d](void* p) { device_free(d, p); }), size});
  }
  void* p = static_cast<char*>(blocks_[current_].memory.get()) + offset_;
  offset_ += bytes;
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return Tensor::wrap(p, shape, dtype, device_);
}

Tensor Arena::zeros(Shape shape, DType dtype) {
  Tensor t = alloc(shape, dtype);
  device_memset_zero(device_, t.data(), t.nbytes());
  return t;
}

void Arena::release(const Mark& m) {
  RT_CHECK(m.in_use <= in_use_, "arena released to a mark above the current top");
  current_ = m.block;
  offset_ = m.offset;
  in_use_ = m.in_use;
}

void Arena::reset() {
  if (blocks_.size() > 1) {
    size_t total = capacity();
    blocks_.clear();
    Device d = device_;
    blocks_.push_back(
        {std::shared_ptr<void>(device_alloc(d, total), [d](void* p) { device_free(d, p); }),
         total});
  }
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

size_t Arena::capacity() const {
  size_t total = 0;
  for (const Block& b : blocks_) total += b.size;
  return total;
}

}  // namespace rt
