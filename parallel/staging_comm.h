// A Communicator over host memory (MPI) handed GPU buffers: each device buffer is copied to a
// host buffer before the operation and back after it, so the ring, the state passing and the
// gradient all-reduce run unchanged on CUDA tensors. Correct on any MPI, CUDA-aware or not;
// the copies cost PCIe time that the NCCL communicator (parallel/nccl_comm.h) does not pay.
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace rt {

// Wraps `inner`; split() wraps the sub-communicators too, so sub-communicators stage as well.
std::unique_ptr<Communicator> staging_communicator(std::unique_ptr<Communicator> inner);

}  // namespace rt
