#include "parallel/staging_comm.h"

#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "kernels/device.h"

namespace rt {

namespace {

// Host bytes standing in for a buffer that may live on the GPU.
class Staged {
 public:
  Staged(void* data, int64_t bytes) : data_(data), on_device_(is_cuda_pointer(data)) {
    if (on_device_) host_.resize(static_cast<size_t>(bytes));
  }
  // The host address to hand to MPI; with `load` it holds the buffer's current contents.
  void* host(bool load) {
    if (!on_device_) return data_;
    if (load) device_copy(Device::CPU, host_.data(), Device::CUDA, data_, host_.size());
    return host_.data();
  }
  // Writes what MPI left in the host bytes back to the device buffer.
  void store() {
    if (on_device_) device_copy(Device::CUDA, data_, Device::CPU, host_.data(), host_.size());
  }

 private:
  void* data_;
  bool on_device_;
  std::vector<char> host_;
};

class StagingCommunicator final : public Communicator {
 public:
  explicit StagingCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }

  void allreduce_sum(float* data, int64_t count, const char* what) override {
    staged(data, count * sizeof(float),
           [&](void* p) { inner_->allreduce_sum(static_cast<float*>(p), count, what); });
  }
  void allreduce_sum(double* data, int64_t count, const char* what) override {
    staged(data, count * sizeof(double),
           [&](void* p) { inner_->allreduce_sum(static_cast<double*>(p), count, what); });
  }
  void allreduce_max(double* data, int64_t count, const char* what) override {
    staged(data, count * sizeof(double),
           [&](void* p) { inner_->allreduce_max(static_cast<double*>(p), count, what); });
  }
  void allgather(const void* in, void* out, int64_t bytes_per_rank, const char* what) override {
    Staged src(const_cast<void*>(in), bytes_per_rank), dst(out, bytes_per_rank * size());
    inner_->allgather(src.host(true), dst.host(false), bytes_per_rank, what);
    dst.store();
  }
  void broadcast(void* data, int64_t bytes, int root, const char* what) override {
    staged(data, bytes, [&](void* p) { inner_->broadcast(p, bytes, root, what); });
  }
  void barrier(const char* what) override { inner_->barrier(what); }
  [[noreturn]] void abort(int exit_code) override {
    inner_->abort(exit_code);
    std::abort();  // unreachable: the inner abort does not return
  }

  void group_start() override { inner_->group_start(); }
  void group_end() override { inner_->group_end(); }
  Request isend(const void* data, int64_t bytes, int dest, int tag) override {
    auto staged = std::make_unique<Staged>(const_cast<void*>(data), bytes);
    const Request inner = inner_->isend(staged->host(true), bytes, dest, tag);
    return keep(inner, std::move(staged), false);
  }
  Request irecv(void* data, int64_t bytes, int source, int tag) override {
    auto staged = std::make_unique<Staged>(data, bytes);
    const Request inner = inner_->irecv(staged->host(false), bytes, source, tag);
    return keep(inner, std::move(staged), true);
  }
  void wait(std::vector<Request>& requests, const char* what) override {
    std::vector<Request> inner;
    for (const Request& r : requests) {
      auto it = pending_.find(r.id);
      RT_CHECK(it != pending_.end(), "wait on an unknown or finished request ", r.id);
      inner.push_back(it->second.inner);
    }
    inner_->wait(inner, what);
    for (Request& r : requests) {
      Pending& p = pending_.at(r.id);
      if (p.receive) p.staged->store();
      pending_.erase(r.id);
    }
    requests.clear();  // as the inner communicator does
  }

  int64_t bytes_sent() const override { return inner_->bytes_sent(); }
  double wait_seconds() const override { return inner_->wait_seconds(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return staging_communicator(inner_->split(color, key));
  }
  std::string backend() const override {
    return inner_->backend() + " (GPU buffers staged through host)";
  }

 private:
  struct Pending {
    Request inner;
    std::unique_ptr<Staged> staged;
    bool receive;
  };

  // A sum, maximum or broadcast over one rank leaves the buffer as it is: nothing to stage.
  template <class Op>
  void staged(void* data, int64_t bytes, Op op) {
    if (size() == 1) return;
    Staged s(data, bytes);
    op(s.host(true));
    s.store();
  }
  Request keep(Request inner, std::unique_ptr<Staged> staged, bool receive) {
    const int64_t id = next_id_++;
    pending_.emplace(id, Pending{inner, std::move(staged), receive});
    return Request{id};
  }

  std::unique_ptr<Communicator> inner_;
  std::unordered_map<int64_t, Pending> pending_;
  int64_t next_id_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> staging_communicator(std::unique_ptr<Communicator> inner) {
  return std::make_unique<StagingCommunicator>(std::move(inner));
}

}  // namespace rt
