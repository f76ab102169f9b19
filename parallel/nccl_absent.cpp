// A build without NCCL: GPU ranks stage their buffers through MPI (parallel/staging_comm.h).
#include "core/check.h"
#include "parallel/nccl_comm.h"

namespace rt {

bool nccl_compiled() { return false; }

std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator>) {
  RT_CHECK(false, "nccl_communicator in a build without NCCL");
}

}  // namespace rt
