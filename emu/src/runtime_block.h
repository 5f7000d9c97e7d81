// Private to the block scheduler (runtime_block.cpp) and the warp operations (runtime_warp.cpp):
// the state of the block an executor thread runs, and what a fiber calls to wait or fail.
#pragma once
#include <algorithm>
#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "runtime_internal.h"

namespace nd_emu::detail {

namespace bctx = boost::context::detail;

constexpr int kWarp = 32;
constexpr size_t kGap = 64;  // canary bytes after each shared-memory region
constexpr unsigned char kSmemCanary = 0x5A;
constexpr size_t kStaticSmemLimit = 48 * 1024;
constexpr size_t kArenaBytes = 232448 + 64 * 1024 + 64 * 1024;

enum class State : uint8_t { NotStarted, Running, Ready, WaitBlock, WaitWarp, Exited };
enum class WarpKind : uint8_t { Shuffle, Ballot, Sync };
enum class Msg : uint8_t { Suspended, Finished, Faulted };

struct Stack {
  char* lo;  // lowest usable byte (a guard page lies below)
  size_t size;
};

struct ThreadState {
  uint3 idx;
  State state;
  Stack* stack;
  bctx::fcontext_t ctx;  // while suspended
  const char* file;      // where it waits
  int line;
  uint64_t result;
};

struct WarpGroup {
  unsigned mask, arrived;
  WarpKind kind;
  ShuffleKind shuffle;
  const char* file;
  int line;
  int first_lane;
  uint64_t value[kWarp];
  int arg[kWarp];
  int width[kWarp];
};

struct Region {
  const void* site;
  size_t offset, bytes;
  const char* name;
  const char* file;
  int line;
};

// Per executor thread; leaked (threads never exit, and exit-time grids still need it).
struct Executor {
  std::vector<Stack*> free_stacks, used_stacks;
  size_t stack_size = 0;
  bctx::fcontext_t sched = nullptr;
  Msg msg = Msg::Finished;
  int msg_thread = -1;
  Stack* msg_stack = nullptr;
  Stack* spawn_stack = nullptr;
#if defined(ND_EMU_ASAN)
  const void* main_bottom = nullptr;
  size_t main_size = 0;
#endif
  // The block.
  Grid* grid = nullptr;
  uint3 block{0, 0, 0};
  int n = 0;
  ThreadOrder order = ThreadOrder::Natural;
  std::mt19937_64 rng;
  std::vector<ThreadState> threads = std::vector<ThreadState>(1024);
  std::vector<int> start_order;
  int start_cursor = 0;
  std::deque<int> ready;
  int exited = 0;
  bool faulted = false;
  int bar_count = 0, bar_first = -1;
  const char* bar_file = nullptr;
  int bar_line = 0;
  std::vector<int> release;
  std::vector<WarpGroup> groups[1024 / kWarp];
  unsigned exited_lanes[1024 / kWarp] = {};
  // Shared memory: dynamic region at 0, then the static arrays of this grid.
  char* arena = nullptr;
  std::vector<Region> regions;
  uint64_t regions_grid = 0;
  size_t arena_end = 0, static_bytes = 0;
  std::string fault_message;
  std::vector<int> warp_release;
};

extern thread_local Executor* t_exec;    // the executor running a block on this thread
extern thread_local ThreadState* t_cur;  // the CUDA thread running now

// Fiber side: back to the scheduler; returns when resumed (never for Finished/Faulted).
void leave(Executor* ex, Msg msg);
// Waits until the scheduler resumes `me` (after a release).
void suspend(Executor* ex, ThreadState* me);
// Makes the released threads runnable in the block's order (front: run them next).
void make_ready(Executor* ex, std::vector<int>& ids, bool front);

inline std::string block_name(const Executor* ex) {
  return "kernel " + ex->grid->kernel + " (block (" + std::to_string(ex->block.x) + "," +
         std::to_string(ex->block.y) + "," + std::to_string(ex->block.z) + "))";
}

inline int thread_id(const Executor* ex, const ThreadState* t) {
  return int(t - ex->threads.data());
}

inline bool prefer_ready(const Executor* ex) {
  return ex->order == ThreadOrder::Warp;
}

inline bool same_site(const char* f1, int l1, const char* f2, int l2) {
  return l1 == l2 && (f1 == f2 || (f1 && f2 && std::strcmp(f1, f2) == 0));
}

inline Executor* running(const char* what) {
  if (t_exec == nullptr || t_cur == nullptr) {
    print_line(std::string(what) + " called outside a kernel");
    std::abort();
  }
  return t_exec;
}

inline std::string hex_mask(unsigned m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}

// A fault inside a fiber: recorded, and the block is abandoned.
// The message is built by `make` and kept in the executor: the abandoned frames free nothing.
template <typename F>
[[noreturn]] void block_fail(Executor* ex, cudaError_t e, F make) {
  ex->fault_message = make();
  fault(e, ex->fault_message);
  ex->grid->aborted = true;
  leave(ex, Msg::Faulted);
  std::abort();  // never resumed
}

}  // namespace nd_emu::detail
