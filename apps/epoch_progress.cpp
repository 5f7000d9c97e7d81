// Progress lines while an epoch runs (see epoch_progress.h).
#include "apps/epoch_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace nd {
namespace {
constexpr double kDefaultSeconds = 10.0;
}

std::string format_duration(double seconds) {
  const int64_t s = std::isfinite(seconds) && seconds > 0 ? int64_t(std::lround(seconds)) : 0;
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", (long long)s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(s / 3600),
                  (long long)(s % 3600 / 60));
  return buf;
}

std::string progress_line(int64_t epoch, int64_t epochs, int64_t steps, const ProgressSnapshot& s,
                          double elapsed) {
  const double per_step = s.steps_done > 0 ? elapsed / double(s.steps_done) : 0;
  const double rate = elapsed > 0 ? double(s.images) / elapsed : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "epoch %lld/%lld  step %lld/%lld  loss %.4f  top1 %.2f%%  %.*f img/s  data %.0f%%  "
                "lr %.5g  ETA %s",
                (long long)epoch, (long long)epochs, (long long)s.steps_done, (long long)steps,
                s.loss_mean, s.top1, rate < 100 ? 1 : 0, rate,
                elapsed > 0 ? 100.0 * std::min(1.0, s.data_seconds / elapsed) : 0.0, s.lr,
                format_duration(per_step * double(steps - s.steps_done)).c_str());
  return buf;
}

EpochProgress::EpochProgress(std::ostream& out, bool enabled, bool terminal, int64_t interval,
                             int64_t epoch, int64_t epochs, int64_t steps)
    : out_(out),
      enabled_(enabled),
      terminal_(terminal),
      interval_(interval),
      epoch_(epoch),
      epochs_(epochs),
      steps_(steps),
      start_(Clock::now()),
      last_(start_) {}

bool EpochProgress::due(int64_t steps_done) const {
  if (!enabled_ || steps_done >= steps_) return false;  // the epoch line follows the last step
  if (interval_ > 0) return steps_done % interval_ == 0;
  return std::chrono::duration<double>(Clock::now() - last_).count() >= kDefaultSeconds;
}

void EpochProgress::report(const ProgressSnapshot& s) {
  if (!enabled_) return;
  last_ = Clock::now();
  const double elapsed = std::chrono::duration<double>(last_ - start_).count();
  const std::string line = progress_line(epoch_, epochs_, steps_, s, elapsed);
  if (terminal_)
    out_ << "\r\033[K" << line << std::flush;
  else
    out_ << line << std::endl;
  shown_ = true;
}

void EpochProgress::finish() {
  if (enabled_ && terminal_ && shown_) out_ << "\r\033[K" << std::flush;
  shown_ = false;
}

}  // namespace nd
