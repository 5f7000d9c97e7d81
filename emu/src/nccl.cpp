// The NCCL stand-in (nccl.h). A communicator of one rank turns collectives into device copies on
// the stream; several ranks are MPI processes (ND_EMU_WITH_MPI), each communicator an
// MPI_COMM_WORLD split ordered by the NCCL rank, and the queued work calls MPI_Allreduce or
// MPI_Bcast on the buffers (device memory is host memory here). Stream work is deferred, so ranks
// reach a collective whenever they flush the stream; MPI blocks until all of them have.
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#if ND_EMU_WITH_MPI
#include <mpi.h>
#endif

namespace {

constexpr char kMagic[8] = {'N', 'D', 'E', 'M', 'U', 'I', 'D', '1'};

struct CommState {
  int nranks = 1;
  int rank = 0;
  int device = 0;
  std::atomic<int> pending{0};  // queued collectives not yet run
#if ND_EMU_WITH_MPI
  MPI_Comm mpi = MPI_COMM_NULL;
#endif
};

}  // namespace

struct ncclComm {
  std::shared_ptr<CommState> state;
};

namespace {

std::mutex g_mutex;
// Never destroyed: handles may be used from exit-time code.
std::unordered_set<ncclComm*>& g_comms = *new std::unordered_set<ncclComm*>;

std::shared_ptr<CommState> lookup(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!comm || !g_comms.count(comm)) return nullptr;
  return comm->state;
}

ncclResult_t warn(ncclResult_t r, const std::string& msg) {
  std::fprintf(stderr, "NCCL WARN (emulator) %s\n", msg.c_str());
  return r;
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

// Call-time checks shared by the collectives, as NCCL's argument check does them.
ncclResult_t check_buffer(const char* fn, const char* name, const void* p, size_t count) {
  if (count == 0) return ncclSuccess;
  if (!p) return warn(ncclInvalidArgument, std::string(fn) + ": " + name + " is null");
  if (nd_emu::memory_kind(p) != nd_emu::MemoryKind::Device)
    return warn(ncclInvalidArgument, std::string(fn) + ": " + name + " is not live device memory");
  return ncclSuccess;
}

ncclResult_t check_stream(const char* fn, const CommState& s, cudaStream_t stream) {
  const int dev = nd_emu::stream_device(stream);
  if (dev != s.device)
    return warn(ncclInvalidUsage, std::string(fn) + ": stream of device " + std::to_string(dev) +
                                      " but the communicator is on device " +
                                      std::to_string(s.device));
  return ncclSuccess;
}

// Runs `work` in stream order, keeping the communicator alive until it has run.
void queue(const std::shared_ptr<CommState>& s, cudaStream_t stream, const char* fn,
           std::function<void()> work) {
  s->pending.fetch_add(1);
  nd_emu::count_library_call();
  nd_emu::enqueue(stream, fn, [s, work = std::move(work)] {
    work();
    s->pending.fetch_sub(1);
  });
}

#if ND_EMU_WITH_MPI
MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
      return MPI_INT8_T;
    case ncclUint8:
      return MPI_UINT8_T;
    case ncclInt32:
      return MPI_INT32_T;
    case ncclUint32:
      return MPI_UINT32_T;
    case ncclInt64:
      return MPI_INT64_T;
    case ncclUint64:
      return MPI_UINT64_T;
    case ncclFloat32:
      return MPI_FLOAT;
    case ncclFloat64:
      return MPI_DOUBLE;
    default:
      return MPI_DATATYPE_NULL;  // 16-bit floats: no MPI type
  }
}

MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclProd:
      return MPI_PROD;
    case ncclMax:
      return MPI_MAX;
    case ncclMin:
      return MPI_MIN;
    default:
      return MPI_SUM;  // ncclSum, and ncclAvg before its division
  }
}

template <typename T>
void divide(void* p, size_t count, int by) {
  T* v = static_cast<T*>(p);
  for (size_t i = 0; i < count; ++i) v[i] = T(v[i] / T(by));
}

void divide_by(void* p, size_t count, ncclDataType_t t, int by) {
  switch (t) {
    case ncclInt8:
      return divide<int8_t>(p, count, by);
    case ncclUint8:
      return divide<uint8_t>(p, count, by);
    case ncclInt32:
      return divide<int32_t>(p, count, by);
    case ncclUint32:
      return divide<uint32_t>(p, count, by);
    case ncclInt64:
      return divide<int64_t>(p, count, by);
    case ncclUint64:
      return divide<uint64_t>(p, count, by);
    case ncclFloat32:
      return divide<float>(p, count, by);
    case ncclFloat64:
      return divide<double>(p, count, by);
    default:
      return;
  }
}

constexpr size_t kMpiChunk = size_t(1) << 30;  // MPI counts are int
#endif

}  // namespace

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (!uniqueId) return warn(ncclInvalidArgument, "ncclGetUniqueId: null argument");
  std::memset(uniqueId, 0, sizeof *uniqueId);
  std::memcpy(uniqueId->internal, kMagic, sizeof kMagic);
  // Distinct ids per call and process, so ranks given different ids are caught at init.
  std::random_device rd;
  const uint64_t parts[3] = {(uint64_t(rd()) << 32) ^ rd(), uint64_t(getpid()),
                             uint64_t(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::memcpy(uniqueId->internal + sizeof kMagic, parts, sizeof parts);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (!comm) return warn(ncclInvalidArgument, "ncclCommInitRank: comm is null");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return warn(ncclInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) +
                                         " of nranks " + std::to_string(nranks));
  if (std::memcmp(commId.internal, kMagic, sizeof kMagic) != 0)
    return warn(ncclInvalidArgument, "ncclCommInitRank: the id does not come from ncclGetUniqueId");
  auto s = std::make_shared<CommState>();
  s->nranks = nranks;
  s->rank = rank;
  if (cudaGetDevice(&s->device) != cudaSuccess)
    return warn(ncclUnhandledCudaError, "ncclCommInitRank: cudaGetDevice failed");
  if (nranks > 1) {
#if ND_EMU_WITH_MPI
    int started = 0, finished = 0, world = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&finished);
    if (!started || finished)
      return warn(ncclInvalidUsage,
                  "ncclCommInitRank: several ranks are MPI processes here; MPI is not running");
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world != nranks)
      return warn(ncclInvalidUsage, "ncclCommInitRank: nranks " + std::to_string(nranks) +
                                        " but MPI_COMM_WORLD has " + std::to_string(world));
    // Collective over the world, like NCCL's init; the key orders the new ranks by NCCL rank.
    MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &s->mpi);
    int mine = -1;
    MPI_Comm_rank(s->mpi, &mine);
    ncclUniqueId root_id = commId;
    MPI_Bcast(root_id.internal, NCCL_UNIQUE_ID_BYTES, MPI_BYTE, 0, s->mpi);
    const bool same_id = std::memcmp(root_id.internal, commId.internal, NCCL_UNIQUE_ID_BYTES) == 0;
    int bad = (mine != rank || !same_id) ? 1 : 0;
    int any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, s->mpi);
    if (any_bad) {
      MPI_Comm_free(&s->mpi);
      return warn(ncclInvalidUsage,
                  "ncclCommInitRank: ranks disagree on the id, or a rank is given twice");
    }
#else
    return warn(ncclInvalidUsage, "ncclCommInitRank: nranks " + std::to_string(nranks) +
                                      " needs MPI, and this emulator was built without it");
#endif
  }
  auto* c = new ncclComm{s};
  std::lock_guard<std::mutex> lock(g_mutex);
  g_comms.insert(c);
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  std::shared_ptr<CommState> s;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!comm || !g_comms.erase(comm))
      return warn(ncclInvalidArgument, "ncclCommDestroy: not a live communicator");
    s = comm->state;
    delete comm;
  }
#if ND_EMU_WITH_MPI
  // Work still queued needs the MPI communicator: it is then left to the process's end.
  int finished = 0;
  MPI_Finalized(&finished);
  if (s->mpi != MPI_COMM_NULL && !finished && s->pending.load() == 0) MPI_Comm_free(&s->mpi);
#endif
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  auto s = lookup(comm);
  if (!s || !count) return warn(ncclInvalidArgument, "ncclCommCount: bad argument");
  *count = s->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  auto s = lookup(comm);
  if (!s || !device) return warn(ncclInvalidArgument, "ncclCommCuDevice: bad argument");
  *device = s->device;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  auto s = lookup(comm);
  if (!s || !rank) return warn(ncclInvalidArgument, "ncclCommUserRank: bad argument");
  *rank = s->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  static const char* fn = "ncclAllReduce";
  auto s = lookup(comm);
  if (!s) return warn(ncclInvalidArgument, std::string(fn) + ": not a live communicator");
  const size_t elem = type_size(datatype);
  if (elem == 0)
    return warn(ncclInvalidArgument, std::string(fn) + ": datatype " + std::to_string(datatype));
  if (int(op) < 0 || op >= ncclNumOps)
    return warn(ncclInvalidArgument, std::string(fn) + ": op " + std::to_string(op));
  ncclResult_t r = check_buffer(fn, "sendbuff", sendbuff, count);
  if (r == ncclSuccess) r = check_buffer(fn, "recvbuff", recvbuff, count);
  if (r == ncclSuccess) r = check_stream(fn, *s, stream);
  if (r != ncclSuccess) return r;
  if (s->nranks > 1 && (datatype == ncclFloat16 || datatype == ncclBfloat16))
    return warn(ncclInvalidUsage,
                std::string(fn) + ": 16-bit float reductions over several ranks are not emulated");
  if (count == 0) return ncclSuccess;
  const size_t bytes = count * elem;
  queue(s, stream, fn, [=] {
    const bool ok = nd_emu::check_device_range(sendbuff, bytes, "ncclAllReduce sendbuff") &&
                    nd_emu::check_device_range(recvbuff, bytes, "ncclAllReduce recvbuff");
    if (s->nranks == 1) {
      // One rank: every reduction, the average included, is the rank's own data.
      if (ok && sendbuff != recvbuff) std::memmove(recvbuff, sendbuff, bytes);
      return;
    }
#if ND_EMU_WITH_MPI
    // A faulty rank still takes part (on scratch) so that its peers do not hang.
    std::vector<char> scratch(ok ? 0 : bytes);
    const bool in_place = !ok || sendbuff == recvbuff;
    char* base = ok ? static_cast<char*>(recvbuff) : scratch.data();
    for (size_t done = 0; done < count; done += kMpiChunk) {
      const size_t n = std::min(kMpiChunk, count - done);
      const void* in = in_place ? MPI_IN_PLACE : static_cast<const char*>(sendbuff) + done * elem;
      MPI_Allreduce(in, base + done * elem, int(n), mpi_type(datatype), mpi_op(op), s->mpi);
    }
    if (ok && op == ncclAvg) divide_by(recvbuff, count, datatype, s->nranks);
#endif
  });
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  static const char* fn = "ncclBroadcast";
  auto s = lookup(comm);
  if (!s) return warn(ncclInvalidArgument, std::string(fn) + ": not a live communicator");
  const size_t elem = type_size(datatype);
  if (elem == 0)
    return warn(ncclInvalidArgument, std::string(fn) + ": datatype " + std::to_string(datatype));
  if (root < 0 || root >= s->nranks)
    return warn(ncclInvalidArgument, std::string(fn) + ": root " + std::to_string(root) + " of " +
                                         std::to_string(s->nranks) + " ranks");
  const bool is_root = root == s->rank;
  ncclResult_t r = is_root ? check_buffer(fn, "sendbuff", sendbuff, count) : ncclSuccess;
  if (r == ncclSuccess) r = check_buffer(fn, "recvbuff", recvbuff, count);
  if (r == ncclSuccess) r = check_stream(fn, *s, stream);
  if (r != ncclSuccess) return r;
  if (count == 0) return ncclSuccess;
  const size_t bytes = count * elem;
  queue(s, stream, fn, [=] {
    const bool ok =
        (!is_root || nd_emu::check_device_range(sendbuff, bytes, "ncclBroadcast sendbuff")) &&
        nd_emu::check_device_range(recvbuff, bytes, "ncclBroadcast recvbuff");
    if (ok && is_root && sendbuff != recvbuff) std::memmove(recvbuff, sendbuff, bytes);
#if ND_EMU_WITH_MPI
    if (s->nranks > 1) {
      // A faulty rank still takes part (on scratch) so that its peers do not hang.
      std::vector<char> scratch(ok ? 0 : bytes);
      char* base = ok ? static_cast<char*>(recvbuff) : scratch.data();
      for (size_t done = 0; done < bytes; done += kMpiChunk)
        MPI_Bcast(base + done, int(std::min(kMpiChunk, bytes - done)), MPI_BYTE, root, s->mpi);
    }
#endif
  });
  return ncclSuccess;
}

ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm,
                       cudaStream_t stream) {
  return ncclBroadcast(buff, buff, count, datatype, root, comm, stream);
}

ncclResult_t ncclGroupStart() {
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  return ncclSuccess;
}
