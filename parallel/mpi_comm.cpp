#include <mpi.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "core/check.h"
#include "parallel/comm.h"
#include "parallel/watchdog.h"

namespace rt {

namespace {

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw RunError(cat("MPI ", what, " failed: ", std::string(text, len)), kExitCommFailure);
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void ensure_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // Errors come back as codes (turned into RunError) instead of killing the job silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::atexit(finalize_at_exit);
  });
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, int64_t count, const char* what) override {
    reduce(data, count, MPI_FLOAT, MPI_SUM, what);
  }
  void allreduce_sum(double* data, int64_t count, const char* what) override {
    reduce(data, count, MPI_DOUBLE, MPI_SUM, what);
  }
  void allreduce_max(double* data, int64_t count, const char* what) override {
    reduce(data, count, MPI_DOUBLE, MPI_MAX, what);
  }

  void allgather(const void* in, void* out, int64_t bytes_per_rank, const char* what) override {
    RT_CHECK(bytes_per_rank <= INT32_MAX, "allgather of more than 2 GiB per rank");
    bytes_sent_ += bytes_per_rank * (size_ - 1);
    Watchdog::Blocking guard(what);
    check_mpi(MPI_Allgather(in, static_cast<int>(bytes_per_rank), MPI_BYTE, out,
                            static_cast<int>(bytes_per_rank), MPI_BYTE, comm_),
              "MPI_Allgather");
  }

  void broadcast(void* data, int64_t bytes, int root, const char* what) override {
    Watchdog::Blocking guard(what);
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes; off += kMaxCount) {
      int n = static_cast<int>(std::min<int64_t>(kMaxCount, bytes - off));
      check_mpi(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }

  void barrier(const char* what) override {
    Watchdog::Blocking guard(what);
    check_mpi(MPI_Barrier(comm_), "MPI_Barrier");
  }

  Request isend(const void* data, int64_t bytes, int dest, int tag) override {
    bytes_sent_ += bytes;
    return post(const_cast<void*>(data), bytes, dest, tag, true);
  }

  Request irecv(void* data, int64_t bytes, int source, int tag) override {
    return post(data, bytes, source, tag, false);
  }

  void wait(std::vector<Request>& requests, const char* what) override {
    std::vector<MPI_Request> all;
    for (Request& r : requests) {
      auto it = pending_.find(r.id);
      RT_CHECK(it != pending_.end(), "wait on an unknown or finished request ", r.id);
      all.insert(all.end(), it->second.begin(), it->second.end());
      pending_.erase(it);
      r.id = -1;
    }
    requests.clear();
    Watchdog::Blocking guard(what);
    const double t0 = MPI_Wtime();
    check_mpi(MPI_Waitall(static_cast<int>(all.size()), all.data(), MPI_STATUSES_IGNORE),
              "MPI_Waitall");
    wait_seconds_ += MPI_Wtime() - t0;
  }

  int64_t bytes_sent() const override { return bytes_sent_; }
  double wait_seconds() const override { return wait_seconds_; }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(comm_, exit_code);
    std::_Exit(exit_code);
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
    return std::make_unique<MpiCommunicator>(sub, true);
  }

  std::string backend() const override { return "mpi"; }

 private:
  static constexpr int64_t kMaxCount = int64_t(1) << 30;  // MPI counts are int

  // One MPI message per part of at most kMaxCount bytes; the parts share the tag (MPI keeps
  // their order between a pair of ranks).
  Request post(void* data, int64_t bytes, int peer, int tag, bool send) {
    std::vector<MPI_Request>& reqs = pending_[next_id_];
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes || (bytes == 0 && off == 0); off += kMaxCount) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxCount, bytes - off));
      MPI_Request r;
      check_mpi(send ? MPI_Isend(p + off, n, MPI_BYTE, peer, tag, comm_, &r)
                     : MPI_Irecv(p + off, n, MPI_BYTE, peer, tag, comm_, &r),
                send ? "MPI_Isend" : "MPI_Irecv");
      reqs.push_back(r);
      if (bytes == 0) break;
    }
    return Request{next_id_++};
  }

  template <class T>
  void reduce(T* data, int64_t count, MPI_Datatype type, MPI_Op op, const char* what) {
    if (size_ == 1) return;
    Watchdog::Blocking guard(what);
    for (int64_t off = 0; off < count; off += kMaxCount) {
      int n = static_cast<int>(std::min<int64_t>(kMaxCount, count - off));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, n, type, op, comm_), "MPI_Allreduce");
    }
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
  int64_t bytes_sent_ = 0;
  double wait_seconds_ = 0;
  int64_t next_id_ = 0;
  std::unordered_map<int64_t, std::vector<MPI_Request>> pending_;
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  // Leading integer: Slurm writes per-node counts like "2(x4)".
  return (end != v && x >= 0) ? static_cast<int>(x) : fallback;
}

}  // namespace

std::unique_ptr<Communicator> mpi_world() {
  ensure_initialized();
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

LocalPlacement local_placement() {
  LocalPlacement p;
  if (std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    p.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    p.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (std::getenv("SLURM_LOCALID")) {
    p.local_rank = env_int("SLURM_LOCALID", 0);
    // SLURM_NTASKS_PER_NODE is set only when requested per node; the step's task count on
    // this node is the general answer.
    p.local_size = env_int("SLURM_STEP_TASKS_PER_NODE", env_int("SLURM_NTASKS_PER_NODE", 1));
  }
  p.local_size = std::max(p.local_size, 1);
  return p;
}

}  // namespace rt
