// NCCL communicators and collectives for CUDA tensors (see comm_nccl.h). Compiled only with
// ND_WITH_NCCL; not yet run on a GPU (the development machines have none).
#include "engine/comm_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "kernels/cuda_runtime_api.h"

namespace nd::comm::detail {

namespace {

#define ND_NCCL_CHECK(stmt)                                                 \
  do {                                                                      \
    const ncclResult_t r_ = (stmt);                                         \
    ND_CHECK(r_ == ncclSuccess, #stmt, " failed: ", ncclGetErrorString(r_), \
             " (NCCL_DEBUG=WARN in the environment makes NCCL say more)");  \
  } while (0)
#define ND_CUDA_RT_CHECK(stmt)                                               \
  do {                                                                       \
    const cudaError_t e_ = (stmt);                                           \
    ND_CHECK(e_ == cudaSuccess, #stmt, " failed: ", cudaGetErrorString(e_)); \
  } while (0)

static_assert(sizeof(ncclUniqueId) == kNcclIdBytes, "ncclUniqueId size changed");

struct Channel {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // gradients: their own; statistics: the compute stream
  bool own_stream = false;
};
Channel g_channels[2];
int g_device = -1;

cudaStream_t compute_stream() {
  return kernels::cuda_stream(g_device);
}

class NcclPending : public PendingAllReduce {
 public:
  NcclPending(cudaStream_t stream, cudaEvent_t done) : stream_(stream), done_(done) {}
  ~NcclPending() override { cudaEventDestroy(done_); }
  void test() override {}
  void wait() override { ND_CUDA_RT_CHECK(cudaStreamWaitEvent(compute_stream(), done_, 0)); }

 private:
  cudaStream_t stream_;
  cudaEvent_t done_;
};

}  // namespace

std::string nccl_make_id() {
  ncclUniqueId id;
  ND_NCCL_CHECK(ncclGetUniqueId(&id));
  return std::string(reinterpret_cast<const char*>(&id), sizeof id);
}

void nccl_join(int channel, const std::string& id, int rank, int size, int device) {
  ND_CHECK(id.size() == sizeof(ncclUniqueId), "NCCL: bad communicator id");
  ND_CHECK(g_device < 0 || g_device == device, "NCCL: this rank already uses cuda:", g_device,
           ", not cuda:", device, " (one GPU per rank)");
  g_device = device;
  kernels::cuda_set_device(device);
  ncclUniqueId uid;
  std::memcpy(&uid, id.data(), sizeof uid);
  Channel& c = g_channels[channel];
  ND_NCCL_CHECK(ncclCommInitRank(&c.comm, size, uid, rank));
  if (channel == int(comm::Channel::Gradients)) {
    ND_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
    c.own_stream = true;
  } else {
    c.stream = compute_stream();
  }
}

bool nccl_joined(int channel) {
  return g_channels[channel].comm != nullptr;
}

int nccl_device() {
  return g_device;
}

void nccl_all_reduce_sum(int channel, float* data, int64_t count) {
  Channel& c = g_channels[channel];
  ND_NCCL_CHECK(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclSum, c.comm, c.stream));
}

void nccl_broadcast(int channel, void* data, int64_t bytes, int root) {
  Channel& c = g_channels[channel];
  ND_NCCL_CHECK(ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, c.comm, c.stream));
}

std::unique_ptr<PendingAllReduce> nccl_start_all_reduce_sum(int channel, float* data,
                                                            int64_t count) {
  Channel& c = g_channels[channel];
  // The gradients were written by work queued on the compute stream: wait for it first.
  cudaEvent_t ready, done;
  ND_CUDA_RT_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  ND_CUDA_RT_CHECK(cudaEventRecord(ready, compute_stream()));
  ND_CUDA_RT_CHECK(cudaStreamWaitEvent(c.stream, ready, 0));
  ND_CUDA_RT_CHECK(cudaEventDestroy(ready));  // released once the wait is satisfied
  ND_NCCL_CHECK(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclSum, c.comm, c.stream));
  ND_CUDA_RT_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  ND_CUDA_RT_CHECK(cudaEventRecord(done, c.stream));
  return std::make_unique<NcclPending>(c.stream, done);
}

void nccl_finalize() {
  for (Channel& c : g_channels) {
    if (c.comm) {
      if (c.stream) cudaStreamSynchronize(c.stream);
      ncclCommDestroy(c.comm);
    }
    if (c.own_stream) cudaStreamDestroy(c.stream);
    c = Channel{};
  }
  g_device = -1;
}

}  // namespace nd::comm::detail
