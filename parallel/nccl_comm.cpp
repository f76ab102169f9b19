#include "parallel/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "kernels/device.h"
#include "parallel/watchdog.h"

namespace rt {

namespace {

[[noreturn]] void fail(const std::string& what) { throw RunError(what, kExitCommFailure); }

void check_cuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail(cat("CUDA ", call, " failed: ", cudaGetErrorString(e)));
}

// Every live NCCL communicator, for the watchdog to abort before it ends a stuck process.
std::mutex g_live_mutex;
std::vector<ncclComm_t> g_live;

void abort_all_live() {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  for (ncclComm_t c : g_live) ncclCommAbort(c);
  g_live.clear();
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Communicator> host) : host_(std::move(host)) {
    ncclUniqueId id{};
    if (host_->rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host_->broadcast(&id, sizeof id, 0, "broadcast(NCCL id)");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // calls return at once; progress and errors are polled (settle)
    check(ncclCommInitRankConfig(&comm_, host_->size(), id, host_->rank(), &config),
          "ncclCommInitRankConfig");
    settle("ncclCommInitRankConfig");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming), "cudaEventCreate");
    static std::once_flag hook;
    std::call_once(hook, [] { Watchdog::on_give_up(abort_all_live); });
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live.push_back(comm_);
  }

  ~NcclCommunicator() override {
    bool live = false;  // false: aborted (and freed) by abort_all_live already
    {
      std::lock_guard<std::mutex> lock(g_live_mutex);
      live = std::erase(g_live, comm_) > 0;
    }
    if (live) {
      // Finalize waits for the peers; while an exception unwinds they may never come, and a
      // failed or slow finalize is aborted rather than waited for.
      bool clean = std::uncaught_exceptions() == 0;
      if (clean) {
        ncclResult_t state = ncclCommFinalize(comm_);
        const auto t0 = std::chrono::steady_clock::now();
        while (state == ncclInProgress && ncclCommGetAsyncError(comm_, &state) == ncclSuccess &&
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() <
                   Watchdog::timeout_seconds())
          std::this_thread::yield();
        clean = state == ncclSuccess;
      }
      if (clean)
        ncclCommDestroy(comm_);
      else
        ncclCommAbort(comm_);
    }
    for (auto& [event, users] : event_users_) cudaEventDestroy(event);
    cudaEventDestroy(compute_done_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }

  void allreduce_sum(float* data, int64_t count, const char* what) override {
    if (!is_cuda_pointer(data)) return host_->allreduce_sum(data, count, what);
    collective(what, [&] {
      return ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream_);
    });
  }
  void allreduce_sum(double* data, int64_t count, const char* what) override {
    if (!is_cuda_pointer(data)) return host_->allreduce_sum(data, count, what);
    collective(what, [&] {
      return ncclAllReduce(data, data, count, ncclFloat64, ncclSum, comm_, stream_);
    });
  }
  void allreduce_max(double* data, int64_t count, const char* what) override {
    if (!is_cuda_pointer(data)) return host_->allreduce_max(data, count, what);
    collective(what, [&] {
      return ncclAllReduce(data, data, count, ncclFloat64, ncclMax, comm_, stream_);
    });
  }
  void allgather(const void* in, void* out, int64_t bytes_per_rank, const char* what) override {
    if (!is_cuda_pointer(out)) return host_->allgather(in, out, bytes_per_rank, what);
    bytes_sent_ += bytes_per_rank * (size() - 1);
    collective(what,
               [&] { return ncclAllGather(in, out, bytes_per_rank, ncclUint8, comm_, stream_); });
  }
  void broadcast(void* data, int64_t bytes, int root, const char* what) override {
    if (!is_cuda_pointer(data)) return host_->broadcast(data, bytes, root, what);
    collective(what,
               [&] { return ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_); });
  }
  void barrier(const char* what) override { host_->barrier(what); }
  [[noreturn]] void abort(int exit_code) override {
    abort_all_live();
    host_->abort(exit_code);
    std::abort();  // unreachable: the host communicator's abort does not return
  }

  void group_start() override {
    RT_CHECK(!in_group_, "nested group_start");
    in_group_ = true;
    begin();
    check(ncclGroupStart(), "ncclGroupStart");
  }
  void group_end() override {
    RT_CHECK(in_group_, "group_end without group_start");
    in_group_ = false;
    check(ncclGroupEnd(), "ncclGroupEnd");
    settle("ncclGroupEnd");
    cudaEvent_t done = record_done();
    for (int64_t id : group_) pending_[id] = done, ++event_users_[done];
    group_.clear();
  }
  // Point to point carries the model's tensors only: device buffers (NCCL does not check).
  Request isend(const void* data, int64_t bytes, int dest, int tag) override {
    RT_CHECK(is_cuda_pointer(data), "NCCL isend of a host buffer; send device buffers");
    bytes_sent_ += bytes;
    return p2p([&] { return ncclSend(data, bytes, ncclUint8, dest, comm_, stream_); });
  }
  Request irecv(void* data, int64_t bytes, int source, int tag) override {
    RT_CHECK(is_cuda_pointer(data), "NCCL irecv into a host buffer; receive into device buffers");
    return p2p([&] { return ncclRecv(data, bytes, ncclUint8, source, comm_, stream_); });
  }
  void wait(std::vector<Request>& requests, const char* what) override {
    const auto t0 = std::chrono::steady_clock::now();
    for (Request& r : requests) {
      auto it = pending_.find(r.id);
      RT_CHECK(it != pending_.end(), "wait on an unknown or finished request ", r.id);
      cudaEvent_t event = it->second;
      pending_.erase(it);
      wait_event(event, what);  // the group's event: done at once after its first wait
      if (--event_users_[event] > 0) continue;
      event_users_.erase(event);
      cudaEventDestroy(event);
    }
    requests.clear();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  int64_t bytes_sent() const override { return bytes_sent_; }
  double wait_seconds() const override { return wait_seconds_; }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return nccl_communicator(host_->split(color, key));
  }
  std::string backend() const override {
    int version = 0;
    ncclGetVersion(&version);
    return cat("nccl ", version / 10000, ".", version / 100 % 100, ".", version % 100,
               " (host buffers: ", host_->backend(), ")");
  }

 private:
  void check(ncclResult_t r, const char* call) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    const std::string message =
        cat("NCCL ", call, " failed: ", ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")");
    abort_all_live();
    fail(message);
  }

  // Non-blocking NCCL: a call may still be in progress when it returns (connecting to a peer
  // that may be gone), so this waits like wait_event does: under the watchdog, with a deadline.
  void settle(const char* call) {
    Watchdog::Blocking blocking(call);
    const auto t0 = std::chrono::steady_clock::now();
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) {
      check(ncclCommGetAsyncError(comm_, &state), call);
      check(state, call);
      if (state == ncclInProgress) {
        give_up_after(t0, call);
        std::this_thread::yield();
      }
    }
  }

  void give_up_after(std::chrono::steady_clock::time_point t0, const char* what) {
    const double timeout = Watchdog::timeout_seconds();
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited <= timeout) return;
    abort_all_live();
    fail(cat("no answer in ", what, " after ", static_cast<int64_t>(waited),
             " s (parallel.timeout_s = ", timeout,
             "); a peer rank died or stopped answering; "
             "NCCL communicators aborted"));
  }

  // The communication stream starts after the work queued so far on the compute stream.
  void begin() {
    check_cuda(cudaEventRecord(compute_done_, cudaStreamLegacy), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, compute_done_, 0), "cudaStreamWaitEvent");
  }
  cudaEvent_t record_done() {
    cudaEvent_t done;
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(done, stream_), "cudaEventRecord");
    return done;
  }

  // Waits on the host, as MPI does, polling NCCL's error state and the deadline.
  void wait_event(cudaEvent_t event, const char* what) {
    Watchdog::Blocking blocking(what);
    const auto t0 = std::chrono::steady_clock::now();
    while (true) {
      const cudaError_t e = cudaEventQuery(event);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) check_cuda(e, what);
      ncclResult_t state = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &state), what);
      check(state, what);
      give_up_after(t0, what);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  template <class Enqueue>
  void collective(const char* what, Enqueue enqueue) {
    begin();
    check(enqueue(), what);
    settle(what);
    cudaEvent_t done = record_done();
    wait_event(done, what);
    cudaEventDestroy(done);
  }

  template <class Enqueue>
  Request p2p(Enqueue enqueue) {
    const bool alone = !in_group_;
    if (alone) group_start();
    check(enqueue(), "ncclSend/ncclRecv");
    const int64_t id = next_id_++;
    group_.push_back(id);
    if (alone) group_end();
    return Request{id};
  }

  std::unique_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;
  bool in_group_ = false;
  std::vector<int64_t> group_;                        // requests of the open group
  std::unordered_map<int64_t, cudaEvent_t> pending_;  // request -> its group's event
  std::unordered_map<cudaEvent_t, int> event_users_;  // requests not yet waited for
  int64_t next_id_ = 0, bytes_sent_ = 0;
  double wait_seconds_ = 0;
};

}  // namespace

bool nccl_compiled() { return true; }

std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> host) {
  return std::make_unique<NcclCommunicator>(std::move(host));
}

}  // namespace rt
