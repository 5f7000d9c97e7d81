// Warp operations of the emulated kernels: __syncwarp, shuffles and ballots are warp-level
// barriers whose lanes, masks and call sites are checked; the lane that completes one computes
// every lane's result into that lane's state, so no exchange slot can be overwritten early.
#include "runtime_block.h"

namespace nd_emu {
using namespace detail;

namespace {

uint64_t warp_op(WarpKind kind, ShuffleKind shuffle, unsigned mask, uint64_t value, int arg,
                 int width, const char* file, int line) {
  Executor* ex = running("a warp operation");
  ThreadState* me = t_cur;
  const int id = thread_id(ex, me), lane = id % kWarp, w = id / kWarp;
  const unsigned bit = 1u << lane;
  const int lanes = std::min(kWarp, ex->n - w * kWarp);
  const unsigned exists = lanes == kWarp ? ~0u : (1u << lanes) - 1;
  auto who = [&] {  // only built for a fault: warp operations are hot
    return "thread " + std::to_string(id) + " (warp " + std::to_string(w) + ", lane " +
           std::to_string(lane) + ") of " + block_name(ex) + " at " + site(file, line) +
           " with mask " + hex_mask(mask);
  };
  if (!(mask & bit))
    block_fail(ex, cudaErrorLaunchFailure,
               [&] { return std::string(who() + ": the mask excludes the caller"); });
  if (mask & ~exists)
    block_fail(ex, cudaErrorLaunchFailure, [&] {
      return std::string(who() + ": the mask names lanes that do not exist (the warp has " +
                         std::to_string(lanes) + " lanes)");
    });
  if (mask & ex->exited_lanes[w])
    block_fail(ex, cudaErrorLaunchFailure, [&] {
      return std::string(who() + ": the mask names lanes that have exited (" +
                         hex_mask(mask & ex->exited_lanes[w]) + ")");
    });
  if (kind == WarpKind::Shuffle && (width < 1 || width > kWarp || (width & (width - 1))))
    block_fail(ex, cudaErrorLaunchFailure,
               [&] { return std::string(who() + ": width " + std::to_string(width)); });
  auto& groups = ex->groups[w];
  WarpGroup* g = nullptr;
  for (WarpGroup& x : groups)
    if (x.mask & bit) g = &x;
  if (g != nullptr) {
    if (g->mask != mask || g->kind != kind || g->shuffle != shuffle ||
        !same_site(g->file, g->line, file, line))
      block_fail(ex, cudaErrorLaunchFailure, [&] {
        return std::string("warp divergence in " + block_name(ex) + ": thread " +
                           std::to_string(w * kWarp + g->first_lane) + " waits at " +
                           site(g->file, g->line) + " (mask " + hex_mask(g->mask) + "), thread " +
                           std::to_string(id) + " at " + site(file, line) + " (mask " +
                           hex_mask(mask) + ")");
      });
  } else {
    for (const WarpGroup& x : groups)
      if (x.mask & mask)
        block_fail(ex, cudaErrorLaunchFailure, [&] {
          return std::string(who() + ": overlaps the mask " + hex_mask(x.mask) +
                             " of the warp operation at " + site(x.file, x.line) + " that lane " +
                             std::to_string(x.first_lane) + " waits at");
        });
    for (int l = 0; l < kWarp; ++l)
      if ((mask >> l & 1u) && ex->threads[size_t(w * kWarp + l)].state == State::WaitBlock)
        block_fail(ex, cudaErrorLaunchFailure, [&] {
          return std::string("barrier divergence in " + block_name(ex) + ": thread " +
                             std::to_string(w * kWarp + l) + " waits at __syncthreads at " +
                             site(ex->threads[size_t(w * kWarp + l)].file,
                                  ex->threads[size_t(w * kWarp + l)].line) +
                             ", thread " + std::to_string(id) + " at a warp operation at " +
                             site(file, line) + " that needs it");
        });
    groups.push_back(WarpGroup{mask, 0, kind, shuffle, file, line, lane, {}, {}, {}});
    g = &groups.back();
  }
  g->arrived |= bit;
  g->value[lane] = value;
  g->arg[lane] = arg;
  g->width[lane] = width;
  me->state = State::WaitWarp;
  me->file = file;
  me->line = line;
  if (g->arrived == mask) {
    // Everyone is here: compute each lane's result into its own state, then release them.
    unsigned ballot = 0;
    for (int l = 0; l < kWarp; ++l)
      if ((mask >> l & 1u) && g->value[l]) ballot |= 1u << l;
    std::vector<int>& ids = ex->warp_release;
    ids.clear();
    for (int l = 0; l < kWarp; ++l) {
      if (!(mask >> l & 1u)) continue;
      uint64_t r = 0;
      if (kind == WarpKind::Ballot) r = ballot;
      if (kind == WarpKind::Shuffle) {
        const int wd = g->width[l], seg = l & ~(wd - 1), a = g->arg[l];
        int src = l;
        switch (shuffle) {  // out of the lane's segment: its own value, as CUDA does
          case ShuffleKind::Index:
            src = seg + ((a % wd) + wd) % wd;
            break;
          case ShuffleKind::Xor:
            src = (l ^ a) >= seg + wd || (l ^ a) < 0 ? l : l ^ a;
            break;
          case ShuffleKind::Down:
            src = l + a >= seg + wd ? l : l + a;
            break;
          case ShuffleKind::Up:
            src = l - a < seg ? l : l - a;
            break;
        }
        if (!(mask >> src & 1u))
          block_fail(ex, cudaErrorLaunchFailure, [&] {
            return std::string("warp shuffle in " + block_name(ex) + " at " + site(file, line) +
                               ": lane " + std::to_string(l) + " of warp " + std::to_string(w) +
                               " reads lane " + std::to_string(src) +
                               ", which is not in the mask " + hex_mask(mask));
          });
        r = g->value[src];
      }
      ex->threads[size_t(w * kWarp + l)].result = r;
      ids.push_back(w * kWarp + l);
    }
    groups.erase(groups.begin() + (g - groups.data()));
    make_ready(ex, ids, prefer_ready(ex));
  }
  suspend(ex, me);
  return me->result;
}

}  // namespace

void warp_barrier(unsigned mask, const char* file, int line) {
  warp_op(WarpKind::Sync, ShuffleKind::Index, mask, 0, 0, kWarp, file, line);
}

uint64_t shuffle_bits(unsigned mask, uint64_t bits, ShuffleKind kind, int arg, int width,
                      const char* file, int line) {
  return warp_op(WarpKind::Shuffle, kind, mask, bits, arg, width, file, line);
}

unsigned ballot(unsigned mask, bool pred, const char* file, int line) {
  return unsigned(
      warp_op(WarpKind::Ballot, ShuffleKind::Index, mask, pred ? 1 : 0, 0, kWarp, file, line));
}

unsigned active_lane_mask() {
  Executor* ex = running("a warp operation");
  const int w = thread_id(ex, t_cur) / kWarp;
  const int lanes = std::min(kWarp, ex->n - w * kWarp);
  return lanes == kWarp ? ~0u : (1u << lanes) - 1;
}

}  // namespace nd_emu
