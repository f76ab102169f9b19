#include "kernels/tensor.h"

#include <cstdlib>
#include <cstring>

#include "kernels/device.h"

namespace rt {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U16: return 2;
    case DType::U32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::U16: return "u16";
    case DType::U32: return "u32";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> d) {
  RT_CHECK(d.size() >= 1 && d.size() <= kMaxDims, "shapes have 1 to 4 dims, got ", d.size());
  for (int64_t x : d) {
    RT_CHECK(x >= 0, "negative dimension ", x);
    dims[ndim++] = x;
  }
}

int64_t Shape::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  size_t bytes = t.nbytes();
  void* p = device_alloc(device, bytes == 0 ? 64 : bytes);
  t.owner_ = std::shared_ptr<void>(p, [device](void* q) { device_free(device, q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  device_memset_zero(device, t.data_, t.nbytes());
  return t;
}

Tensor Tensor::wrap(void* data, Shape shape, DType dtype, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::rows(int64_t start, int64_t count) const {
  RT_CHECK(ndim() >= 1 && start >= 0 && count >= 0 && start + count <= size(0), "rows [", start,
           ", ", start + count, ") of a tensor ", shape_.str());
  Tensor t = *this;
  int64_t row_elems = numel() / std::max<int64_t>(size(0), 1);
  t.data_ =
      static_cast<char*>(data_) + start * row_elems * static_cast<int64_t>(dtype_size(dtype_));
  t.shape_.dims[0] = count;
  return t;
}

Tensor Tensor::view(Shape shape) const {
  RT_CHECK(shape.numel() == numel(), "view ", shape.str(), " of a tensor ", shape_.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor to_device(const Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), device);
  copy_tensor(out, t);
  return out;
}

void copy_tensor(const Tensor& dst, const Tensor& src) {
  RT_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), "copy ", src.shape().str(),
           " ", dtype_name(src.dtype()), " into ", dst.shape().str(), " ", dtype_name(dst.dtype()));
  device_copy(dst.device(), dst.data(), src.device(), src.data(), src.nbytes());
}

}  // namespace rt
