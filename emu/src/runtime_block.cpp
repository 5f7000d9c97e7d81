// One block of a grid on one executor thread: its CUDA threads are cooperative fibers
// (Boost.Context fcontext on pooled mmap'd stacks). A fiber runs threads back to back until one
// blocks at a barrier or warp operation, so a kernel that never synchronises costs one fiber per
// block. Block barriers and shared memory are checked here; a fault abandons the
// block's fibers (their stacks are recycled, no destructors run: kernel bodies hold no resources).
// Warp operations are in runtime_warp.cpp.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "runtime_block.h"

namespace nd_emu::detail {

thread_local Executor* t_exec = nullptr;
thread_local ThreadState* t_cur = nullptr;

namespace {

Executor* executor() {
  thread_local Executor* ex = nullptr;
  if (ex == nullptr) {
    ex = new Executor;
#if defined(ND_EMU_ASAN)
    const int64_t kb = env_int("ND_EMU_STACK_KB", 512);
#else
    const int64_t kb = env_int("ND_EMU_STACK_KB", 128);
#endif
    ex->stack_size = size_t(std::max<int64_t>(kb, 16)) * 1024;
    void* a =
        mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
      print_line("cannot map a shared-memory arena");
      std::abort();
    }
    ex->arena = static_cast<char*>(a);
  }
  return ex;
}

// ---- fibers
// --------------------------------------------------------------------------------------

Stack* take_stack(Executor* ex) {
  Stack* s;
  if (!ex->free_stacks.empty()) {
    s = ex->free_stacks.back();
    ex->free_stacks.pop_back();
  } else {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* m = mmap(nullptr, ex->stack_size + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
      print_line("cannot map a fiber stack");
      std::abort();
    }
    mprotect(m, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    s = new Stack{static_cast<char*>(m) + page, ex->stack_size};
  }
  ex->used_stacks.push_back(s);
  return s;
}

// `abandoned`: the fiber stopped anywhere (a fault), not at the top of its stack.
void give_stack(Executor* ex, Stack* s, bool abandoned) {
#if defined(ND_EMU_ASAN)
  // Frames left behind keep their redzones; a finished fiber leaves only its top frames.
  const size_t top = abandoned ? s->size : std::min<size_t>(s->size, 8192);
  ASAN_UNPOISON_MEMORY_REGION(s->lo + s->size - top, top);
#else
  (void)abandoned;
#endif
  for (auto& u : ex->used_stacks)
    if (u == s) {
      u = ex->used_stacks.back();
      ex->used_stacks.pop_back();
      break;
    }
  ex->free_stacks.push_back(s);
}

// Scheduler side: enter a fiber until it suspends, finishes or faults.
void enter(Executor* ex, bctx::fcontext_t to, Stack* stack) {
#if defined(ND_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, stack->lo, stack->size);
#else
  (void)stack;
#endif
  bctx::transfer_t t = bctx::jump_fcontext(to, ex);
#if defined(ND_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  switch (ex->msg) {
    case Msg::Suspended:
      ex->threads[size_t(ex->msg_thread)].ctx = t.fctx;
      break;
    case Msg::Finished:
      give_stack(ex, ex->msg_stack, false);
      break;
    case Msg::Faulted:
      ex->faulted = true;
      break;
  }
}

}  // namespace

void leave(Executor* ex, Msg msg) {
  ex->msg = msg;
#if defined(ND_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(msg == Msg::Suspended ? &fake : nullptr, ex->main_bottom,
                                 ex->main_size);
#endif
  bctx::transfer_t t = bctx::jump_fcontext(ex->sched, nullptr);
  ex->sched = t.fctx;
#if defined(ND_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, &ex->main_bottom, &ex->main_size);
#endif
}

void suspend(Executor* ex, ThreadState* me) {
  ex->msg_thread = thread_id(ex, me);
  leave(ex, Msg::Suspended);
  t_cur = me;
}

namespace {

void on_exit(Executor* ex, ThreadState* me) {
  const int id = thread_id(ex, me);
  me->state = State::Exited;
  ex->exited++;
  ex->exited_lanes[id / kWarp] |= 1u << (id % kWarp);
  if (ex->bar_count > 0)
    block_fail(ex, cudaErrorLaunchFailure, [&] {
      return std::string("barrier divergence in " + block_name(ex) + ": thread " +
                         std::to_string(id) + " exited while thread " +
                         std::to_string(ex->bar_first) + " waits at __syncthreads at " +
                         site(ex->bar_file, ex->bar_line));
    });
  for (const WarpGroup& g : ex->groups[id / kWarp])
    if (g.mask & (1u << (id % kWarp)))
      block_fail(ex, cudaErrorLaunchFailure, [&] {
        return std::string("warp divergence in " + block_name(ex) + ": thread " +
                           std::to_string(id) + " exited while lanes of its warp wait for it at " +
                           site(g.file, g.line));
      });
}

void start_thread(Executor* ex, ThreadState* t, int id, Stack* stack) {
  const dim3& b = ex->grid->cfg.block;
  t->idx = uint3{unsigned(id) % b.x, (unsigned(id) / b.x) % b.y, unsigned(id) / (b.x * b.y)};
  t->state = State::Running;
  t->stack = stack;
  t_cur = t;
}

void fiber_main(bctx::transfer_t from) {
  Executor* ex = static_cast<Executor*>(from.data);
  ex->sched = from.fctx;
#if defined(ND_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &ex->main_bottom, &ex->main_size);
#endif
  Stack* stack = ex->spawn_stack;
  for (;;) {
    const int id = ex->start_order[size_t(ex->start_cursor++)];
    ThreadState* t = &ex->threads[size_t(id)];
    start_thread(ex, t, id, stack);
    ex->grid->body();
    on_exit(ex, t_cur);
    // Start the next thread on this same stack unless released threads should go first.
    if (ex->start_cursor >= ex->n || (prefer_ready(ex) && !ex->ready.empty())) break;
  }
  ex->msg_stack = stack;
  leave(ex, Msg::Finished);
  std::abort();  // never resumed
}

// ---- orders
// ----------------------------------------------------------------------------------------

// Ids in the order of the block's policy (natural, reverse, by warps, shuffled).
void order_ids(Executor* ex, std::vector<int>& ids) {
  switch (ex->order) {
    case ThreadOrder::Natural:
      std::sort(ids.begin(), ids.end());
      break;
    case ThreadOrder::Reverse:
      std::sort(ids.rbegin(), ids.rend());
      break;
    case ThreadOrder::Warp: {
      // Warps reversed in even blocks and in index order in odd ones: a warp that runs ahead
      // then overwrites what the others still read whether its data sits first or last.
      const bool reversed = (ex->block.x + ex->block.y + ex->block.z) % 2 == 0;
      std::sort(ids.begin(), ids.end(), [reversed](int a, int b) {
        return a / kWarp != b / kWarp ? (a / kWarp > b / kWarp) == reversed : a < b;
      });
      break;
    }
    case ThreadOrder::Random:
      std::shuffle(ids.begin(), ids.end(), ex->rng);
      break;
  }
}

}  // namespace

void make_ready(Executor* ex, std::vector<int>& ids, bool front) {
  order_ids(ex, ids);
  for (int id : ids) ex->threads[size_t(id)].state = State::Ready;
  if (front)
    ex->ready.insert(ex->ready.begin(), ids.begin(), ids.end());
  else
    ex->ready.insert(ex->ready.end(), ids.begin(), ids.end());
}

namespace {

// ---- shared memory
// ---------------------------------------------------------------------------------

void write_gap(Executor* ex, size_t at) {
#if defined(ND_EMU_ASAN)
  ASAN_POISON_MEMORY_REGION(ex->arena + at, kGap);  // the overrunning access itself is reported
#else
  std::memset(ex->arena + at, kSmemCanary, kGap);
#endif
}

void poison_arena(Executor* ex) {
  if (ex->regions_grid != ex->grid->serial) {
    ex->regions.clear();
    ex->regions_grid = ex->grid->serial;
    ex->static_bytes = 0;
    ex->arena_end = (ex->grid->cfg.shared_bytes + 15) / 16 * 16 + kGap;
  }
#if defined(ND_EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(ex->arena, ex->arena_end);
#endif
  std::memset(ex->arena, 0xFF, ex->arena_end);  // NaN: a read before any write shows
  write_gap(ex, (ex->grid->cfg.shared_bytes + 15) / 16 * 16);
  for (const Region& r : ex->regions) write_gap(ex, r.offset + r.bytes);
}

// The first overrun region, or "" after checking every gap.
std::string smem_overrun(Executor* ex) {
#if defined(ND_EMU_ASAN)
  (void)ex;
  return "";
#else
  auto bad = [ex](size_t at) {
    for (size_t i = 0; i < kGap; ++i)
      if (static_cast<unsigned char>(ex->arena[at + i]) != kSmemCanary) return true;
    return false;
  };
  const LaunchConfig& cfg = ex->grid->cfg;
  if (bad((cfg.shared_bytes + 15) / 16 * 16))
    return "shared memory overrun past the dynamic shared memory (" +
           std::to_string(cfg.shared_bytes) + " bytes, launch at " + site(cfg.file, cfg.line) +
           ") in " + block_name(ex);
  for (const Region& r : ex->regions)
    if (bad(r.offset + r.bytes))
      return "shared memory overrun past `" + std::string(r.name) + "` (" + site(r.file, r.line) +
             ") in " + block_name(ex);
  return "";
#endif
}

}  // namespace

bool run_block(Grid& grid, uint64_t linear) {
  Executor* ex = executor();
  Executor* outer_exec = t_exec;
  ThreadState* outer_cur = t_cur;
  t_exec = ex;
  ex->grid = &grid;
  const dim3& g = grid.cfg.grid;
  ex->block = uint3{unsigned(linear % g.x), unsigned((linear / g.x) % g.y),
                    unsigned(linear / (uint64_t(g.x) * g.y))};
  const dim3& b = grid.cfg.block;
  const int n = int(b.x * b.y * b.z);
  ex->n = n;
  uint64_t seed = 0;
  ex->order = order_for_run(&seed);
  if (ex->order == ThreadOrder::Random)
    ex->rng.seed(seed ^ (grid.serial * 0x9E3779B97F4A7C15ull) ^ (linear * 0xBF58476D1CE4E5B9ull));
  ex->start_order.resize(size_t(n));
  for (int i = 0; i < n; ++i) ex->start_order[size_t(i)] = i;
  if (ex->order != ThreadOrder::Natural) order_ids(ex, ex->start_order);
  for (int i = 0; i < n; ++i) ex->threads[size_t(i)].state = State::NotStarted;
  for (int w = 0; w < (n + kWarp - 1) / kWarp; ++w) {
    ex->groups[w].clear();
    ex->exited_lanes[w] = 0;
  }
  ex->start_cursor = 0;
  ex->ready.clear();
  ex->exited = 0;
  ex->faulted = false;
  ex->bar_count = 0;
  ex->release.clear();
  poison_arena(ex);

  while (!ex->faulted) {
    const bool take_ready = !ex->ready.empty() && (prefer_ready(ex) || ex->start_cursor >= n);
    if (take_ready) {
      const int id = ex->ready.front();
      ex->ready.pop_front();
      ThreadState* t = &ex->threads[size_t(id)];
      t->state = State::Running;
      t_cur = t;
      enter(ex, t->ctx, t->stack);
    } else if (ex->start_cursor < n) {
      ex->spawn_stack = take_stack(ex);
      bctx::fcontext_t c = bctx::make_fcontext(ex->spawn_stack->lo + ex->spawn_stack->size,
                                               ex->spawn_stack->size, fiber_main);
      enter(ex, c, ex->spawn_stack);
    } else {
      break;
    }
  }
  if (!ex->faulted && ex->exited < n) {
    // Nobody can run: threads wait at a barrier or warp operation that can never complete.
    const ThreadState *at_block = nullptr, *at_warp = nullptr;
    for (int i = 0; i < n; ++i) {
      const ThreadState* t = &ex->threads[size_t(i)];
      if (t->state == State::WaitBlock && !at_block) at_block = t;
      if (t->state == State::WaitWarp && !at_warp) at_warp = t;
    }
    std::string message = "deadlock in " + block_name(ex);
    if (at_block && at_warp)
      message = "barrier divergence in " + block_name(ex) + ": thread " +
                std::to_string(thread_id(ex, at_block)) + " waits at __syncthreads at " +
                site(at_block->file, at_block->line) + ", thread " +
                std::to_string(thread_id(ex, at_warp)) + " at a warp operation at " +
                site(at_warp->file, at_warp->line);
    else if (at_warp)
      message = "warp divergence in " + block_name(ex) + ": thread " +
                std::to_string(thread_id(ex, at_warp)) + " waits at a warp operation at " +
                site(at_warp->file, at_warp->line) + " for lanes that never arrive";
    fault(cudaErrorLaunchFailure, message);
    ex->faulted = true;
  }
  if (ex->faulted) {
    while (!ex->used_stacks.empty())
      give_stack(ex, ex->used_stacks.back(), true);  // abandoned fibers
    grid.aborted = true;
  } else {
    const std::string overrun = smem_overrun(ex);
    if (!overrun.empty()) {
      fault(cudaErrorIllegalAddress, overrun);
      ex->faulted = true;
    }
  }
  t_exec = outer_exec;
  t_cur = outer_cur;
  return !ex->faulted;
}

}  // namespace nd_emu::detail

// ---- the device-side interface (nd_emu.h)
// ------------------------------------------------------------

namespace nd_emu {
using namespace detail;

const uint3& current_thread_index() {
  running("threadIdx");
  return t_cur->idx;
}
const uint3& current_block_index() {
  return running("blockIdx")->block;
}
const dim3& current_block_dim() {
  return running("blockDim")->grid->cfg.block;
}
const dim3& current_grid_dim() {
  return running("gridDim")->grid->cfg.grid;
}

void block_barrier(const char* file, int line) {
  Executor* ex = running("__syncthreads");
  ThreadState* me = t_cur;
  const int id = thread_id(ex, me);
  if (ex->exited > 0) {
    int gone = 0;
    while (ex->threads[size_t(gone)].state != State::Exited) ++gone;
    block_fail(ex, cudaErrorLaunchFailure, [&] {
      return std::string("barrier divergence in " + block_name(ex) + ": thread " +
                         std::to_string(gone) + " exited while thread " + std::to_string(id) +
                         " waits at __syncthreads at " + site(file, line));
    });
  }
  for (const WarpGroup& g : ex->groups[id / kWarp])
    if (g.mask & (1u << (id % kWarp)))
      block_fail(ex, cudaErrorLaunchFailure, [&] {
        return std::string("barrier divergence in " + block_name(ex) + ": thread " +
                           std::to_string(id) + " waits at __syncthreads at " + site(file, line) +
                           ", thread " + std::to_string(id / kWarp * kWarp + g.first_lane) +
                           " at a warp operation at " + site(g.file, g.line) + " that needs it");
      });
  if (ex->bar_count == 0) {
    ex->bar_file = file;
    ex->bar_line = line;
    ex->bar_first = id;
  } else if (!same_site(ex->bar_file, ex->bar_line, file, line)) {
    block_fail(ex, cudaErrorLaunchFailure, [&] {
      return std::string("barrier divergence in " + block_name(ex) + ": thread " +
                         std::to_string(ex->bar_first) + " waits at " +
                         site(ex->bar_file, ex->bar_line) + ", thread " + std::to_string(id) +
                         " at " + site(file, line));
    });
  }
  me->state = State::WaitBlock;
  me->file = file;
  me->line = line;
  ex->release.push_back(id);
  if (++ex->bar_count == ex->n) {
    ex->bar_count = 0;
    make_ready(ex, ex->release, false);
    ex->release.clear();
  }
  suspend(ex, me);
}

void* dynamic_shared_memory() {
  return running("dynamic shared memory")->arena;
}

void* static_shared_memory(const void* site_key, size_t bytes, size_t align, const char* name,
                           const char* file, int line) {
  Executor* ex = running("__shared__");
  for (const Region& r : ex->regions)
    if (r.site == site_key) return ex->arena + r.offset;
  // First request in this grid on this executor: place it after the last region and its gap.
  const size_t a = std::max<size_t>(align, 16);
  const size_t offset = (ex->arena_end + a - 1) / a * a;
  ex->static_bytes += bytes;
  if (ex->static_bytes > kStaticSmemLimit || offset + bytes + kGap > kArenaBytes)
    block_fail(ex, cudaErrorLaunchOutOfResources, [&] {
      return std::string(block_name(ex) + ": static shared memory reaches " +
                         std::to_string(ex->static_bytes) + " bytes with `" + name + "` (" +
                         site(file, line) + "); at most 49152 (a GPU build would not compile)");
    });
#if defined(ND_EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(ex->arena + ex->arena_end, offset + bytes - ex->arena_end);
#endif
  std::memset(ex->arena + offset, 0xFF, bytes);
  write_gap(ex, offset + bytes);
  ex->regions.push_back(Region{site_key, offset, bytes, name, file, line});
  ex->arena_end = offset + bytes + kGap;
  return ex->arena + offset;
}

}  // namespace nd_emu
