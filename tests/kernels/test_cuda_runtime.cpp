// The CUDA runtime layer (device memory and copies). Skips where no GPU is visible, which
// includes every CPU-only build.
#include <gtest/gtest.h>

#include "kernels/device.h"
#include "tests/testing.h"

namespace rt {
namespace {

TEST(CudaRuntime, CopiesRoundTripThroughDeviceMemory) {
  if (cuda_device_count() == 0)
    GTEST_SKIP() << "no CUDA device (CUDA backend built: " << cuda_compiled() << ")";
  Tensor host = testing::random_tensor({1000, 3}, 1);
  Tensor dev = Tensor::empty(host.shape(), DType::F32, Device::CUDA);
  Tensor back = Tensor::zeros(host.shape());
  copy_tensor(dev, host);
  copy_tensor(back, dev);
  EXPECT_TRUE(std::equal(host.f32(), host.f32() + host.numel(), back.f32()));
  EXPECT_FALSE(cuda_device_name(0).empty());
}

TEST(CudaRuntime, CpuOnlyBuildsSayHowToGetCuda) {
  if (cuda_compiled()) GTEST_SKIP() << "this build has the CUDA backend";
  try {
    Tensor::empty({4}, DType::F32, Device::CUDA);
    FAIL() << "allocated CUDA memory without a CUDA backend";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("-DRINGTRAIN_CUDA=ON"), std::string::npos);
  }
}

}  // namespace
}  // namespace rt
