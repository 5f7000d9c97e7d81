// SIGINT / SIGTERM handling (see interrupt.h). The handler stores the signal number in a
// lock-free atomic, the only thing a handler may safely do here; SA_RESTART keeps reads and writes
// in progress (a checkpoint being written) from failing with EINTR; SA_RESETHAND makes a second
// signal take its default action.
#include "apps/interrupt.h"

#include <signal.h>

#include <atomic>

namespace nd {

namespace {

std::atomic<int> received{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

void on_stop_signal(int signal) {
  int expected = 0;
  received.compare_exchange_strong(expected, signal);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART | SA_RESETHAND;
  for (int signal : {SIGINT, SIGTERM})
    ND_CHECK(sigaction(signal, &action, nullptr) == 0, "cannot install the ", signal_name(signal),
             " handler");
}

int stop_signal() {
  return received.load();
}

std::string signal_name(int signal) {
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal);
}

}  // namespace nd
