#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "core/check.h"
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

namespace {
std::string g_device_count_error;  // why cudaGetDeviceCount found nothing
}  // namespace

bool compiled() { return true; }

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later calls are not confused
    g_device_count_error = cudaGetErrorString(e);
    return 0;
  }
  return n;
}

std::string device_count_error() { return g_device_count_error; }

std::string device_name(int ordinal) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
  return prop.name;
}

void* malloc_device(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw RunError(
        cat("GPU out of memory: ", bytes >> 20, " MiB asked for, ", free >> 20, " of ", total >> 20,
            " MiB free; lower train.micro_tokens or set train.recompute: "
            "true (ringtrain train --dry-run prints the memory a rank needs)"),
        1);
  }
  check(e, "cudaMalloc");
  return p;
}

void free_device(void* ptr) { cudaFree(ptr); }

void memset_zero(void* ptr, size_t bytes) { check(cudaMemset(ptr, 0, bytes), "cudaMemset"); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  cudaMemcpyKind kind = dst_on_device
                            ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                            : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

void set_device(int ordinal) {
  check(cudaSetDevice(ordinal), "cudaSetDevice");
  // Scratch memory comes from the stream-ordered pool: keep what it has grown to instead of
  // giving it back to the driver at every synchronisation.
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, ordinal), "cudaDeviceGetDefaultMemPool");
  uint64_t keep_all = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all),
        "cudaMemPoolSetAttribute");
}

void device_uuid(int ordinal, unsigned char out[16]) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
  std::memcpy(out, prop.uuid.bytes, 16);
}

int current_device() {
  int d = 0;
  check(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

bool is_device_pointer(const void* ptr) {
  static const bool any_device = device_count() > 0;
  if (!any_device) return false;  // no driver or no GPU: nothing is device memory
  cudaPointerAttributes attributes{};
  const cudaError_t e = cudaPointerGetAttributes(&attributes, ptr);
  if (e == cudaErrorInvalidValue) {
    cudaGetLastError();  // a host pointer the driver never saw is not an error to keep
    return false;
  }
  // Anything else is a broken context (an earlier kernel fault): say so instead of handing a
  // device pointer to MPI as if it were host memory.
  check(e, "cudaPointerGetAttributes");
  return attributes.type == cudaMemoryTypeDevice;
}

}  // namespace rt::cuda
