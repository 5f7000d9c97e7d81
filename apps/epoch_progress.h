// Progress lines while an epoch runs: epoch, step/steps, running mean loss, top-1 so far,
// images/s, the share of time spent waiting for data, learning rate and the epoch's ETA. Every
// `interval` steps, or about every 10 s of wall time when interval is 0. On a terminal the line
// is rewritten in place; in a pipe or file each report is a whole line.
#pragma once
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace nd {

struct ProgressSnapshot {
  int64_t steps_done = 0;
  double loss_mean = 0, top1 = 0;  // over the images seen so far this epoch (top1 in %)
  int64_t images = 0;
  double data_seconds = 0;  // time the training loop waited for the loader
  double lr = 0;
};

std::string format_duration(double seconds);  // "45s", "12m05s", "3h07m"
std::string progress_line(int64_t epoch, int64_t epochs, int64_t steps, const ProgressSnapshot& s,
                          double elapsed_seconds);

class EpochProgress {
 public:
  using Clock = std::chrono::steady_clock;
  // `epoch` counts from 1. Nothing is printed when `enabled` is false.
  EpochProgress(std::ostream& out, bool enabled, bool terminal, int64_t interval, int64_t epoch,
                int64_t epochs, int64_t steps);
  // Whether a report is due after `steps_done` steps (the caller then syncs and reports).
  bool due(int64_t steps_done) const;
  void report(const ProgressSnapshot& s);
  // Ends the rewritten line on a terminal before the epoch's summary line.
  void finish();

 private:
  std::ostream& out_;
  bool enabled_, terminal_;
  int64_t interval_, epoch_, epochs_, steps_;
  Clock::time_point start_, last_;
  bool shown_ = false;
};

}  // namespace nd
