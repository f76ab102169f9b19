// Communicator: the collective and point-to-point operations ranks use, whatever carries them
// (MPI between CPU processes today; NCCL between GPUs with the CUDA backend).
// Buffers are host memory for the MPI backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace rt {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In-place sums over every rank of the communicator. Results are bit-identical on every rank
  // and from run to run for the same sizes (the reduction order is fixed by the algorithm).
  virtual void allreduce_sum(float* data, int64_t count) = 0;
  virtual void allreduce_sum(double* data, int64_t count) = 0;
  virtual void allreduce_max(double* data, int64_t count) = 0;
  // out holds size() * count elements: rank r's block lands at r * count.
  virtual void allgather(const void* in, void* out, int64_t bytes_per_rank) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job with this exit code, whatever they are doing.
  [[noreturn]] virtual void abort(int exit_code) = 0;

  // Ranks with the same color form a new communicator, ordered by key.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  virtual std::string backend() const = 0;
};

// The process's MPI world. Initialises MPI on first use (with or without mpirun: a plain start
// is a world of one) and finalises it at exit.
std::unique_ptr<Communicator> mpi_world();

// Where this process sits on its node, from the launcher's environment
// (OMPI_COMM_WORLD_LOCAL_RANK/_SIZE, then SLURM_LOCALID/SLURM_NTASKS_PER_NODE); 0 of 1 without.
struct LocalPlacement {
  int local_rank = 0;
  int local_size = 1;
};
LocalPlacement local_placement();

}  // namespace rt
