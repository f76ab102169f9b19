// Raw memory on a device. CPU memory is 64-byte aligned; CUDA memory comes from the CUDA
// runtime when the build has it (kernels/cuda/), otherwise asking for it is a clear error.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/tensor.h"

namespace rt {

void* device_alloc(Device device, size_t bytes);
void device_free(Device device, void* ptr);
void device_memset_zero(Device device, void* ptr, size_t bytes);
void device_copy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes);

// Threads of the CPU kernels (OpenMP loops and OpenBLAS) in this process.
void set_cpu_threads(int n);
int cpu_threads();

// Whether ptr is CUDA device memory (false in a CPU-only build): what a host-memory
// communicator must stage (parallel/staging_comm.h).
bool is_cuda_pointer(const void* ptr);

bool cuda_compiled();  // this binary was built with the CUDA backend
// Makes GPU `ordinal % cuda_device_count()` this process's device (one rank per GPU: the
// node-local rank's) and returns its ordinal; a UserError when the build or the machine has
// no GPU.
int use_cuda_device(int ordinal);
// The 16-byte identity of this process's GPU (after use_cuda_device): ranks that share a GPU
// have the same one.
std::string cuda_device_uuid();
// Waits for the work queued on `device` (timing; a no-op on the CPU).
void device_synchronize(Device device);
int cuda_device_count();  // 0 without a driver/device, or without the CUDA backend
std::string cuda_device_name(int ordinal);

}  // namespace rt
