// Internal to engine/comm.cpp: the NCCL half of the communication service (CUDA tensors), built
// only when the CUDA toolkit has NCCL (ND_WITH_NCCL). One communicator per channel, made from an
// id that rank 0 broadcasts over MPI; statistics collectives run on the compute stream, gradient
// all-reduces on a stream of their own, ordered against the compute stream by events.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/comm.h"

namespace nd::comm::detail {

constexpr size_t kNcclIdBytes = 128;  // sizeof(ncclUniqueId)

// Rank 0 makes an id (kNcclIdBytes), every rank then joins with it on `device`.
std::string nccl_make_id();
void nccl_join(int channel, const std::string& id, int rank, int size, int device);
bool nccl_joined(int channel);
int nccl_device();
// In place on float32 device memory.
void nccl_all_reduce_sum(int channel, float* data, int64_t count);
void nccl_broadcast(int channel, void* data, int64_t bytes, int root);
std::unique_ptr<PendingAllReduce> nccl_start_all_reduce_sum(int channel, float* data,
                                                            int64_t count);
void nccl_finalize();

}  // namespace nd::comm::detail
