// Collective communication between the ranks of a data-parallel job: the engine's one door to
// MPI (process placement, CPU tensors) and NCCL (CUDA tensors). Built or run without MPI it is a
// world of one whose collectives return their input, so nothing above the engine needs to know.
// Layers call it to synchronise batch statistics, the trainer to reduce gradients; only
// engine/comm*.cpp include mpi.h or nccl.h.
//
// Two channels keep the order of collectives identical on every rank even when they overlap:
// Channel::Statistics (blocking, in forward and backward order, on the compute stream) and
// Channel::Gradients (the bucketed, non-blocking gradient all-reduce on its own stream).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace nd::comm {

// Starts MPI when this binary was built with it and a launcher (mpirun, srun) started the
// process; otherwise the world stays one process. Call once, first thing in main().
void init(int& argc, char**& argv);
// Ends MPI (after every collective has finished). Safe to call without init().
void finalize();
// Ends every rank of the job now with `code` (MPI_Abort); a world of one just exits. Each rank
// that fails prints its message first, so the job ends with it instead of hanging.
[[noreturn]] void abort(int code);

bool mpi_built();
bool nccl_built();
int rank();
int world_size();
int local_rank();  // rank among the processes of this machine (picks the GPU)
// Whether collectives communicate: a world of more than one, or ND_COMM_FORCE=1 (a world of one
// then goes through the data-parallel path anyway: CUDA tensors through a one-rank NCCL
// communicator, CPU tensors through MPI when a launcher started MPI; the check of that path on
// a machine with one GPU). Otherwise every collective returns its input.
bool active();
inline bool is_root() {
  return rank() == 0;
}
// "rank 1 of 4" (empty in a world of one): for messages.
std::string where();

enum class Channel { Statistics, Gradients };

// ---- in place, outside autograd; same shape and dtype on every rank; CPU tensors through
// MPI, CUDA tensors through NCCL (float32), a no-op in a world of one.
void all_reduce_sum_(Tensor& t, Channel channel = Channel::Statistics);
void broadcast_(Tensor& t, int root = 0);
double all_reduce_sum(double v);
int64_t all_reduce_sum(int64_t v);
int64_t all_reduce_max(int64_t v);
// Sum of v over the ranks below this one (0 on rank 0).
int64_t exclusive_prefix_sum(int64_t v);
void barrier();
// True when every rank passed the same value (e.g. a hash of its settings).
bool same_on_all_ranks(uint64_t v);

// y = the sum of x over all ranks, on every rank; differentiable. Its backward all-reduces the
// incoming gradient: the objective is the sum of every rank's loss, and each y feeds all of
// them, so dL/dx on rank r = sum over ranks q of dL_q/dy.
Tensor all_reduce_sum(const Tensor& x);

// Whether layers combine batch statistics across ranks (--sync-stats, on by default): true only
// when active() with the switch on.
bool sync_statistics();
void set_sync_statistics(bool on);

// A non-blocking all-reduce (sum) in place on a contiguous tensor. CPU: MPI_Iallreduce, pushed
// along by test(); CUDA: NCCL on the gradient stream after the compute stream's work so far.
class PendingAllReduce {
 public:
  virtual ~PendingAllReduce() = default;
  virtual void test() = 0;  // lets the library progress; never blocks
  // CPU: waits for the result. CUDA: makes the compute stream wait for it (the host does not).
  virtual void wait() = 0;
};
std::unique_ptr<PendingAllReduce> start_all_reduce_sum(Tensor& t, Channel channel);

// Bytes all-reduced per channel since the last reset (each rank's buffer size, the quantity the
// scaling model of docs/distributed.md uses); broadcasts are not counted.
struct Traffic {
  int64_t statistics_bytes = 0, gradient_bytes = 0;
  int64_t statistics_calls = 0, gradient_calls = 0;
  // CPU (MPI) only: wall time this rank spent blocked in all-reduces and in waits for them.
  double blocked_seconds = 0;
};
Traffic traffic();
void reset_traffic();

}  // namespace nd::comm
