// The communicators of GPU ranks against what MPI gives host buffers: the staging one
// (parallel/staging_comm.h) everywhere for host buffers and where a GPU is visible for device
// buffers; the NCCL one (parallel/nccl_comm.h) where every rank has a GPU of its own (a world
// of one on a one-GPU machine: NCCL sends to itself). Run under mpirun for several world sizes.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/device.h"
#include "parallel/nccl_comm.h"
#include "parallel/staging_comm.h"

namespace rt {
namespace {

// This rank's 37 values: 100 * rank + i.
std::vector<float> values_of(int rank) {
  std::vector<float> v(37);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 100.0f * rank + static_cast<float>(i);
  return v;
}

// Ranks exchange around the ring as the ring attention does: sends and receives in one group.
// `make` gives a buffer holding the values v, `read` a buffer's values.
template <class Make, class Read>
void ring_exchange(Communicator& comm, Make make, Read read) {
  const int r = comm.rank(), n = comm.size();
  const std::vector<float> mine = values_of(r);
  auto send = make(mine), recv = make(std::vector<float>(mine.size(), -1.0f));
  comm.group_start();
  std::vector<Communicator::Request> reqs = {
      comm.isend(send->data, static_cast<int64_t>(mine.size() * 4), (r + 1) % n, 5),
      comm.irecv(recv->data, static_cast<int64_t>(mine.size() * 4), (r + n - 1) % n, 5)};
  comm.group_end();
  comm.wait(reqs, "ring");
  EXPECT_TRUE(reqs.empty());
  EXPECT_EQ(read(recv), values_of((r + n - 1) % n));
}

// Sums and gathers over the world, as the gradient all-reduce and the state passing do.
template <class Make, class Read>
void reduce_and_gather(Communicator& comm, Make make, Read read) {
  const int n = comm.size();
  const std::vector<float> mine = values_of(comm.rank());
  auto send = make(mine);
  auto sum = make(mine);
  comm.allreduce_sum(static_cast<float*>(sum->data), static_cast<int64_t>(mine.size()), "sum");
  const std::vector<float> total = read(sum);
  for (size_t i = 0; i < total.size(); ++i)
    ASSERT_EQ(total[i], 100.0f * n * (n - 1) / 2 + static_cast<float>(n * i));

  auto all = make(std::vector<float>(mine.size() * n, 0.0f));
  comm.allgather(send->data, all->data, static_cast<int64_t>(mine.size() * 4), "gather");
  const std::vector<float> gathered = read(all);
  for (int q = 0; q < n; ++q) ASSERT_EQ(gathered[q * mine.size() + 3], 100.0f * q + 3);
}

template <class Make, class Read>
void exchange_and_reduce(Communicator& comm, Make make, Read read) {
  ring_exchange(comm, make, read);
  reduce_and_gather(comm, make, read);
}

struct HostBuffer {
  std::vector<float> values;
  void* data;
  explicit HostBuffer(std::vector<float> v) : values(std::move(v)), data(values.data()) {}
  HostBuffer(const HostBuffer&) = delete;
};

std::unique_ptr<HostBuffer> make_host(std::vector<float> v) {
  return std::make_unique<HostBuffer>(std::move(v));
}
std::vector<float> read_host(const std::unique_ptr<HostBuffer>& b) { return b->values; }

TEST(StagingComm, HostBuffersPassThrough) {
  auto comm = staging_communicator(mpi_world());
  EXPECT_NE(comm->backend().find("staged"), std::string::npos);
  exchange_and_reduce(*comm, make_host, read_host);
}

struct DeviceBuffer {
  Tensor t;
  void* data;
  explicit DeviceBuffer(const std::vector<float>& v)
      : t(Tensor::empty({static_cast<int64_t>(v.size())}, DType::F32, Device::CUDA)),
        data(t.data()) {
    device_copy(Device::CUDA, t.data(), Device::CPU, v.data(), v.size() * 4);
  }
};

std::unique_ptr<DeviceBuffer> make_device(std::vector<float> v) {
  return std::make_unique<DeviceBuffer>(v);
}
std::vector<float> read_device(const std::unique_ptr<DeviceBuffer>& b) {
  std::vector<float> v(static_cast<size_t>(b->t.numel()));
  device_copy(Device::CPU, v.data(), Device::CUDA, b->t.data(), v.size() * 4);
  return v;
}

TEST(StagingComm, GpuBuffersTravelLikeHostOnes) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  use_cuda_device(0);  // every rank on GPU 0 is fine: MPI carries the bytes
  auto comm = staging_communicator(mpi_world());
  auto split = comm->split(0, comm->rank());  // sub-communicators stage too
  for (Communicator* c : {comm.get(), split.get()})
    exchange_and_reduce(*c, make_device, read_device);
}

TEST(NcclComm, DeviceAndHostBuffersOverNccl) {
  auto world = mpi_world();
  if (!nccl_compiled()) GTEST_SKIP() << "built without NCCL";
  if (cuda_device_count() < world->size())
    GTEST_SKIP() << world->size() << " ranks need as many GPUs; " << cuda_device_count()
                 << " visible";
  use_cuda_device(local_placement().local_rank);
  auto comm = nccl_communicator(std::move(world));
  EXPECT_NE(comm->backend().find("nccl"), std::string::npos);
  auto split = comm->split(0, comm->rank());
  for (Communicator* c : {comm.get(), split.get()}) {
    exchange_and_reduce(*c, make_device, read_device);
    reduce_and_gather(*c, make_host, read_host);  // host buffers go by MPI
  }
}

}  // namespace
}  // namespace rt
