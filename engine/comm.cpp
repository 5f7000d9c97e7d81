// The communication service (see comm.h): MPI for placement and CPU tensors, NCCL (comm_nccl.cpp)
// for CUDA tensors, a world of one when either MPI is not built in or no launcher started us.
#include "engine/comm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/autograd.h"
#ifdef ND_WITH_MPI
#include <mpi.h>
#endif
#ifdef ND_WITH_NCCL
#include "engine/comm_nccl.h"
#endif

namespace nd::comm {

namespace {

int g_rank = 0, g_size = 1, g_local_rank = 0;
[[maybe_unused]] bool g_mpi_started = false;  // only MPI builds start it
bool g_force = false;                         // ND_COMM_FORCE=1: communicate in a world of one too
bool g_sync_statistics = true;
Traffic g_traffic;

void count(Channel channel, const Tensor& t) {
  const int64_t bytes = t.numel() * int64_t(dtype_size(t.dtype()));
  if (channel == Channel::Statistics) {
    g_traffic.statistics_bytes += bytes;
    ++g_traffic.statistics_calls;
  } else {
    g_traffic.gradient_bytes += bytes;
    ++g_traffic.gradient_calls;
  }
}

// Adds the wall time of its scope to Traffic::blocked_seconds.
class BlockedTimer {
 public:
  BlockedTimer() : start_(std::chrono::steady_clock::now()) {}
  ~BlockedTimer() {
    g_traffic.blocked_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

#ifdef ND_WITH_MPI
// Environment variables that MPI launchers set in every process they start.
bool launched_by_mpi() {
  for (const char* v :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "ND_MPI", "ND_COMM_FORCE"})
    if (std::getenv(v)) return true;
  return false;
}

MPI_Comm g_comms[2] = {MPI_COMM_NULL, MPI_COMM_NULL};

MPI_Comm comm_of(Channel c) {
  return g_comms[int(c)];
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    case DType::U8:
      return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  ND_FAIL(what, " failed on ", where(), ": ", std::string(text, size_t(len)));
}

int count_of(const Tensor& t) {
  ND_CHECK(t.numel() <= INT32_MAX, "MPI: tensor of ", t.numel(), " elements is too large");
  return int(t.numel());
}

class MpiPending : public PendingAllReduce {
 public:
  explicit MpiPending(MPI_Request r) : request_(r) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void test() override {
    int flag = 0;
    if (request_ != MPI_REQUEST_NULL)
      check_mpi(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), "MPI_Test");
  }
  void wait() override {
    BlockedTimer timer;
    if (request_ != MPI_REQUEST_NULL) check_mpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
  }

 private:
  MPI_Request request_;
};
#endif

class DonePending : public PendingAllReduce {
 public:
  void test() override {}
  void wait() override {}
};

#ifdef ND_WITH_NCCL
// NCCL joins lazily at the first collective on a CUDA tensor (all ranks reach it in the same
// order), on that tensor's device.
void ensure_nccl(Channel c, const Tensor& t) {
  const int ch = int(c);
  if (detail::nccl_joined(ch)) {
    ND_CHECK(detail::nccl_device() == t.device().index, "collective on ", t.device().str(),
             " but this rank's GPU is cuda:", detail::nccl_device());
    return;
  }
  std::string id = rank() == 0 ? detail::nccl_make_id() : std::string(detail::kNcclIdBytes, '\0');
#ifdef ND_WITH_MPI
  if (g_mpi_started)
    check_mpi(MPI_Bcast(id.data(), int(id.size()), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
#endif
  detail::nccl_join(ch, id, rank(), world_size(), t.device().index);
}
#endif

// The CUDA half of a collective: NCCL, or an error naming what to do.
void check_cuda_collective(const Tensor& t, const char* what) {
#ifdef ND_WITH_NCCL
  ND_CHECK(t.dtype() == DType::F32 || std::strcmp(what, "broadcast") == 0, what,
           " of a CUDA tensor needs float32, got ", dtype_name(t.dtype()));
#else
  ND_FAIL(what, " of a tensor on ", t.device().str(), " across ", world_size(),
          " ranks needs NCCL, and this build has none: multi-rank training runs on the CPU only "
          "(--device cpu), or rebuild where the CUDA toolkit has NCCL");
#endif
}

}  // namespace

void init(int& argc, char**& argv) {
  const char* force = std::getenv("ND_COMM_FORCE");
  g_force = force && std::strcmp(force, "1") == 0;
#ifdef ND_WITH_MPI
  if (g_mpi_started || !launched_by_mpi()) return;
  int provided = 0;
  check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  g_mpi_started = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &g_local_rank);
  MPI_Comm_free(&node);
  for (MPI_Comm& c : g_comms) MPI_Comm_dup(MPI_COMM_WORLD, &c);
  // Errors come back as codes (and become exceptions with a message) instead of aborting here.
  for (MPI_Comm c : g_comms) MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
  (void)argc, (void)argv;
  // Started as one of several ranks without MPI: each would train alone on the same files.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* n = std::getenv(v);
    if (n && std::atoi(n) > 1) {
      std::fprintf(stderr,
                   "this binary was built without MPI but started as one of %s ranks; rebuild "
                   "with MPI (apt-get install libopenmpi-dev) or run one process\n",
                   n);
      std::exit(1);
    }
  }
#endif
}

void finalize() {
#ifdef ND_WITH_NCCL
  detail::nccl_finalize();
#endif
#ifdef ND_WITH_MPI
  if (!g_mpi_started) return;
  for (MPI_Comm& c : g_comms) MPI_Comm_free(&c);
  MPI_Finalize();
  g_mpi_started = false;
#endif
}

void abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef ND_WITH_MPI
  if (g_mpi_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  finalize();
  std::exit(code);
}

bool mpi_built() {
#ifdef ND_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#ifdef ND_WITH_NCCL
  return true;
#else
  return false;
#endif
}

bool active() {
  return g_size > 1 || g_force;
}

int rank() {
  return g_rank;
}
int world_size() {
  return g_size;
}
int local_rank() {
  return g_local_rank;
}

std::string where() {
  return g_size > 1 ? "rank " + std::to_string(g_rank) + " of " + std::to_string(g_size) : "";
}

void all_reduce_sum_(Tensor& t, Channel channel) {
  if (!active() || t.numel() == 0) return;
  ND_CHECK(t.is_contiguous(), "all_reduce_sum_ needs a contiguous tensor");
  count(channel, t);
  if (t.device().is_cuda()) {
    check_cuda_collective(t, "all-reduce");
#ifdef ND_WITH_NCCL
    ensure_nccl(channel, t);
    detail::nccl_all_reduce_sum(int(channel), t.data<float>(), t.numel());
#endif
    return;
  }
#ifdef ND_WITH_MPI
  if (!g_mpi_started) return;  // a forced world of one without MPI
  BlockedTimer timer;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), count_of(t), mpi_type(t.dtype()), MPI_SUM,
                          comm_of(channel)),
            "MPI_Allreduce");
#endif
}

void broadcast_(Tensor& t, int root) {
  if (!active() || t.numel() == 0) return;
  ND_CHECK(t.is_contiguous(), "broadcast_ needs a contiguous tensor");
  if (t.device().is_cuda()) {
    check_cuda_collective(t, "broadcast");
#ifdef ND_WITH_NCCL
    ensure_nccl(Channel::Statistics, t);
    detail::nccl_broadcast(int(Channel::Statistics), t.raw_data(),
                           t.numel() * int64_t(dtype_size(t.dtype())), root);
#endif
    return;
  }
#ifdef ND_WITH_MPI
  if (!g_mpi_started) return;
  check_mpi(
      MPI_Bcast(t.raw_data(), count_of(t), mpi_type(t.dtype()), root, comm_of(Channel::Statistics)),
      "MPI_Bcast");
#else
  (void)root;
#endif
}

namespace {
template <typename T>
T reduce_scalar(T v, bool max) {
#ifdef ND_WITH_MPI
  if (!active() || !g_mpi_started) return v;
  T out{};
  check_mpi(MPI_Allreduce(&v, &out, 1, mpi_type(dtype_of<T>()), max ? MPI_MAX : MPI_SUM,
                          comm_of(Channel::Statistics)),
            "MPI_Allreduce");
  return out;
#else
  (void)max;
  return v;
#endif
}
}  // namespace

double all_reduce_sum(double v) {
  return reduce_scalar(v, false);
}
int64_t all_reduce_sum(int64_t v) {
  return reduce_scalar(v, false);
}
int64_t all_reduce_max(int64_t v) {
  return reduce_scalar(v, true);
}

int64_t exclusive_prefix_sum(int64_t v) {
#ifdef ND_WITH_MPI
  if (!active() || !g_mpi_started) return 0;
  int64_t out = 0;
  check_mpi(MPI_Exscan(&v, &out, 1, MPI_INT64_T, MPI_SUM, comm_of(Channel::Statistics)),
            "MPI_Exscan");
  return g_rank == 0 ? 0 : out;  // undefined on rank 0
#else
  (void)v;
  return 0;
#endif
}

void barrier() {
#ifdef ND_WITH_MPI
  if (active() && g_mpi_started)
    check_mpi(MPI_Barrier(comm_of(Channel::Statistics)), "MPI_Barrier");
#endif
}

bool same_on_all_ranks(uint64_t v) {
  if (!active()) return true;
  const int64_t half[2] = {int64_t(v >> 32), int64_t(v & 0xffffffffu)};
  bool same = true;
  for (int64_t h : half) same = same && all_reduce_max(h) == -all_reduce_max(-h);
  return same;
}

Tensor all_reduce_sum(const Tensor& x) {
  if (!active()) return x;
  Tensor y = x.detach().clone();
  all_reduce_sum_(y, Channel::Statistics);
  if (!any_requires_grad({&x})) return y;
  return record(y, {x}, "all_reduce_sum", [](const Tensor& g) {
    Tensor total = g.detach().clone();
    all_reduce_sum_(total, Channel::Statistics);
    return std::vector<Tensor>{total};
  });
}

bool sync_statistics() {
  return active() && g_sync_statistics;
}
void set_sync_statistics(bool on) {
  g_sync_statistics = on;
}

std::unique_ptr<PendingAllReduce> start_all_reduce_sum(Tensor& t, Channel channel) {
  if (!active() || t.numel() == 0) return std::make_unique<DonePending>();
  ND_CHECK(t.is_contiguous(), "start_all_reduce_sum needs a contiguous tensor");
  count(channel, t);
  if (t.device().is_cuda()) {
    check_cuda_collective(t, "all-reduce");
#ifdef ND_WITH_NCCL
    ensure_nccl(channel, t);
    return detail::nccl_start_all_reduce_sum(int(channel), t.data<float>(), t.numel());
#endif
  }
#ifdef ND_WITH_MPI
  if (!g_mpi_started) return std::make_unique<DonePending>();
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), count_of(t), mpi_type(t.dtype()), MPI_SUM,
                           comm_of(channel), &request),
            "MPI_Iallreduce");
  return std::make_unique<MpiPending>(request);
#else
  return std::make_unique<DonePending>();
#endif
}

Traffic traffic() {
  return g_traffic;
}
void reset_traffic() {
  g_traffic = Traffic{};
}

}  // namespace nd::comm
