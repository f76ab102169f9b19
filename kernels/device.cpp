#include "kernels/device.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cuda/runtime.h"

namespace rt {

namespace {
constexpr size_t kAlign = 64;

void require_cuda_backend() {
  if (!cuda_compiled())
    throw UserError(
        "this ringtrain was built without the CUDA backend; reconfigure with "
        "-DRINGTRAIN_CUDA=ON on a machine with the CUDA toolkit, or use run.device: cpu");
}
}  // namespace

void* device_alloc(Device device, size_t bytes) {
  if (device == Device::CPU) {
    size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  require_cuda_backend();
  return cuda::malloc_device(bytes);
}

void device_free(Device device, void* ptr) {
  if (!ptr) return;
  if (device == Device::CPU) {
    std::free(ptr);
  } else {
    cuda::free_device(ptr);
  }
}

void device_memset_zero(Device device, void* ptr, size_t bytes) {
  if (device == Device::CPU) {
    std::memset(ptr, 0, bytes);
  } else {
    require_cuda_backend();
    cuda::memset_zero(ptr, bytes);
  }
}

void device_copy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes) {
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  require_cuda_backend();
  cuda::copy(dst, dst_device == Device::CUDA, src, src_device == Device::CUDA, bytes);
}

bool is_cuda_pointer(const void* ptr) { return cuda::is_device_pointer(ptr); }
bool cuda_compiled() { return cuda::compiled(); }

std::string cuda_device_uuid() {
  unsigned char bytes[16];
  cuda::device_uuid(cuda::current_device(), bytes);
  return std::string(reinterpret_cast<const char*>(bytes), 16);
}

void device_synchronize(Device device) {
  if (device == Device::CUDA) cuda::synchronize();
}

int use_cuda_device(int ordinal) {
  require_cuda_backend();
  const int count = cuda::device_count();
  if (count == 0) {
    const std::string why = cuda::device_count_error();
    throw UserError(cat("run.device: cuda, but no CUDA device is visible",
                        why.empty() ? "" : " (" + why + ")",
                        "; nvidia-smi lists the GPUs, check CUDA_VISIBLE_DEVICES and the driver, "
                        "or use run.device: cpu"));
  }
  cuda::set_device(ordinal % count);
  return ordinal % count;
}
int cuda_device_count() { return cuda::device_count(); }
std::string cuda_device_name(int ordinal) { return cuda::device_name(ordinal); }

}  // namespace rt
