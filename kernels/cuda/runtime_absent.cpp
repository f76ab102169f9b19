// The CUDA runtime entry points of a build without the CUDA backend: nothing is there.
#include "core/check.h"
#include "kernels/cuda/runtime.h"

namespace rt::cuda {

bool compiled() { return false; }
int device_count() { return 0; }
std::string device_name(int) { return ""; }
void* malloc_device(size_t) { RT_CHECK(false, "CUDA memory requested from a CPU-only build"); }
void free_device(void*) {}
void memset_zero(void*, size_t) { RT_CHECK(false, "CUDA memset in a CPU-only build"); }
bool is_device_pointer(const void*) { return false; }
void synchronize() {}
int current_device() { return -1; }
void device_uuid(int, unsigned char[16]) { RT_CHECK(false, "device_uuid in a CPU-only build"); }
std::string device_count_error() { return "built without the CUDA backend"; }
void set_device(int) { RT_CHECK(false, "cudaSetDevice in a CPU-only build"); }
void copy(void*, bool, const void*, bool, size_t) {
  RT_CHECK(false, "CUDA copy in a CPU-only build");
}

}  // namespace rt::cuda
