// The CUDA runtime as the rest of kernels/ sees it. Built from runtime.cu with the CUDA
// backend, from runtime_absent.cpp without it; either way these symbols exist.
#pragma once

#include <cstddef>
#include <string>

namespace rt::cuda {

bool compiled();
int device_count();
std::string device_name(int ordinal);
void* malloc_device(size_t bytes);
void free_device(void* ptr);
void memset_zero(void* ptr, size_t bytes);
void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
bool is_device_pointer(const void* ptr);
void set_device(int ordinal);
int current_device();
void device_uuid(int ordinal, unsigned char out[16]);
std::string device_count_error();  // why device_count() found none ("" when it did not fail)
void synchronize();

}  // namespace rt::cuda
