// The Communicator of GPU ranks: device buffers travel by NCCL on a stream of their own (one
// rank per GPU), host buffers (loss sums, counters, the resume broadcast) by the MPI
// communicator NCCL was bootstrapped over. NCCL runs non-blocking: every wait polls
// ncclCommGetAsyncError and the watchdog's deadline, and a failure or a silent peer ends in
// ncclCommAbort and a RunError (exit 4) instead of a hang.
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace rt {

// Whether this build has NCCL (the CUDA backend found it).
bool nccl_compiled();
// Collective over `host`'s ranks: every rank calls it, after choosing its GPU.
std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> host);

}  // namespace rt
