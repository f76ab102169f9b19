// Tensor: a typed, shaped, row-major contiguous block of memory on a device.
// A tensor either owns its storage (Tensor::empty / zeros) or views memory owned elsewhere
// (an Arena, a flat parameter buffer). Views are offsets along dim 0 (rows) or reshapes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "core/check.h"
#include "core/enum_names.h"

namespace rt {

enum class DType : uint8_t { F32, BF16, I32, U16, U32 };
enum class Device : uint8_t { CPU, CUDA };
template <>
struct EnumNames<Device> {  // run.device
  static constexpr std::string_view noun = "device";
  static constexpr std::array<std::string_view, 2> names = {"cpu", "cuda"};
};

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

struct Shape {
  static constexpr int kMaxDims = 4;
  int64_t dims[kMaxDims] = {0, 0, 0, 0};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t numel() const;
  int64_t operator[](int i) const { return dims[i < 0 ? i + ndim : i]; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[4, 256]"
};

class Tensor {
 public:
  Tensor() = default;

  // Owned, uninitialised / zero-filled storage.
  static Tensor empty(Shape shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(Shape shape, DType dtype = DType::F32, Device device = Device::CPU);
  // A view of memory owned by someone else; the caller keeps it alive.
  static Tensor wrap(void* data, Shape shape, DType dtype = DType::F32,
                     Device device = Device::CPU);

  bool defined() const { return data_ != nullptr; }
  void* data() const { return data_; }
  float* f32() const { return typed<float>(DType::F32); }
  int32_t* i32() const { return typed<int32_t>(DType::I32); }
  uint16_t* u16() const { return typed<uint16_t>(DType::U16); }
  uint32_t* u32() const { return typed<uint32_t>(DType::U32); }
  uint16_t* bf16() const { return typed<uint16_t>(DType::BF16); }  // bf16 bits

  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim; }
  int64_t size(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  // Rows [start, start + count) along dim 0, sharing storage.
  Tensor rows(int64_t start, int64_t count) const;
  // Same storage, another shape with the same number of elements.
  Tensor view(Shape shape) const;

 private:
  template <class T>
  T* typed(DType want) const {
    RT_CHECK(dtype_ == want, "tensor is ", dtype_name(dtype_), ", accessed as ", dtype_name(want));
    return static_cast<T*>(data_);
  }

  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  std::shared_ptr<void> owner_;  // null for views of memory owned elsewhere
};

// Copies between tensors of the same shape and dtype, on any devices.
void copy_tensor(const Tensor& dst, const Tensor& src);
// t itself when it is already on `device`, else a copy of it there (owned storage).
Tensor to_device(const Tensor& t, Device device);

}  // namespace rt
