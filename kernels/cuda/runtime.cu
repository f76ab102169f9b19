#include <cuda_runtime.h>

#include "kernels/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/runtime.h"

namespace rt::cuda {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw RunError(cat("CUDA ", what, " failed: ", cudaGetErrorString(e)), 1);
}
}  // namespace

void fail_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw RunError(cat(file, ":", line, ": CUDA call ", call, " failed: ", cudaGetErrorString(e),
                     " (run with CUDA_LAUNCH_BLOCKING=1 to find the kernel at fault)"),
                 1);
}

// The legacy default stream for now: every op and every copy is ordered on it. Overlap with
// communication comes from the communicator's own streams, which wait on events of this one.
cudaStream_t compute_stream() { return cudaStreamLegacy; }

void sync_compute() { RT_CUDA(cudaStreamSynchronize(compute_stream())); }

Scratch::Scratch(size_t bytes) {
  if (bytes) RT_CUDA(cudaMallocAsync(&ptr_, bytes, compute_stream()));
}

Scratch::~Scratch() {
  if (ptr_) cudaFreeAsync(ptr_, compute_stream());
}

bool compiled() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later calls are not confused
    return 0;
  }
  return n;
}

std::string device_name(int ordinal) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
  return prop.name;
}

void* malloc_device(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void free_device(void* ptr) { cudaFree(ptr); }

void memset_zero(void* ptr, size_t bytes) { check(cudaMemset(ptr, 0, bytes), "cudaMemset"); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice
                                                       : cudaMemcpyHostToDevice)
                                      : (src_on_device ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyHostToHost);
  check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

void set_device(int ordinal) { check(cudaSetDevice(ordinal), "cudaSetDevice"); }

bool is_device_pointer(const void* ptr) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // a host pointer the driver never saw is not an error to keep
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice;
}

}  // namespace rt::cuda
