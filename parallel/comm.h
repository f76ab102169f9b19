// Communicator: the collective and point-to-point operations ranks use, whatever carries them
// (MPI between CPU processes today; NCCL between GPUs with the CUDA backend).
// Buffers are host memory for the MPI backend. Every blocking call runs under the watchdog
// (parallel/watchdog.h) with the operation name given, so a dead peer ends the job with a
// message instead of a hang.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rt {

class Communicator {
 public:
  // A pending isend/irecv; finished by wait().
  struct Request {
    int64_t id = -1;
  };

  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In-place sums over every rank of the communicator. Results are bit-identical on every rank
  // and from run to run for the same sizes (the reduction order is fixed by the algorithm).
  // `what` ("allreduce(loss)") is what the watchdog names when a peer never arrives.
  virtual void allreduce_sum(float* data, int64_t count, const char* what) = 0;
  virtual void allreduce_sum(double* data, int64_t count, const char* what) = 0;
  virtual void allreduce_max(double* data, int64_t count, const char* what) = 0;
  // out holds size() * bytes_per_rank bytes: rank r's block lands at r * bytes_per_rank.
  virtual void allgather(const void* in, void* out, int64_t bytes_per_rank,
                         const char* what = "allgather") = 0;
  virtual void broadcast(void* data, int64_t bytes, int root, const char* what = "broadcast") = 0;
  virtual void barrier(const char* what = "barrier") = 0;
  // Ends every process of the job with this exit code, whatever they are doing.
  [[noreturn]] virtual void abort(int exit_code) = 0;

  // Point-to-point calls between group_start() and group_end() are posted together: NCCL
  // needs a rank's sends and receives in one group (else two ranks that both send first wait
  // for each other); MPI posts each call at once and ignores the brackets.
  virtual void group_start() {}
  virtual void group_end() {}
  // Non-blocking point to point (any size; large messages travel in parts).
  virtual Request isend(const void* data, int64_t bytes, int dest, int tag) = 0;
  virtual Request irecv(void* data, int64_t bytes, int source, int tag) = 0;
  // Completes the requests; `what` names the wait for the watchdog.
  virtual void wait(std::vector<Request>& requests, const char* what) = 0;

  // Bytes this rank has sent through isend and allgather (its block to each of the other
  // ranks, what a ring all-gather sends), and seconds spent inside wait(), since construction:
  // the traffic and the communication time compute did not hide (benchmarks).
  virtual int64_t bytes_sent() const = 0;
  virtual double wait_seconds() const = 0;

  // Ranks with the same color form a new communicator, ordered by key.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  virtual std::string backend() const = 0;
};

// The process's MPI world. Initialises MPI on first use (with or without mpirun: a plain start
// is a world of one) and finalises it at exit.
std::unique_ptr<Communicator> mpi_world();

// Where this process sits on its node, from the launcher's environment
// (OMPI_COMM_WORLD_LOCAL_RANK/_SIZE, then SLURM_LOCALID/SLURM_STEP_TASKS_PER_NODE); 0 of 1 without.
struct LocalPlacement {
  int local_rank = 0;
  int local_size = 1;
};
LocalPlacement local_placement();

}  // namespace rt
