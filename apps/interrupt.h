// Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (kill, a batch system's time limit): the
// handlers only record the signal; the trainer checks between steps, so a step and a checkpoint
// write always finish, then abandons the epoch and throws Interrupted. The last complete
// checkpoint stays as it is; --resume continues from it. A second signal ends the process at once
// (the checkpoints are written atomically, so even that loses nothing written).
#pragma once
#include <string>

#include "core/error.h"

namespace nd {

class Interrupted : public Error {
 public:
  Interrupted(int signal, const std::string& what) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }  // SIGINT or SIGTERM

 private:
  int signal_;
};

// Installs the SIGINT and SIGTERM handlers (nd-train's main does; tests running the trainer in
// process do not).
void install_stop_handlers();
// 0, or the first stop signal received.
int stop_signal();
// "SIGINT", "SIGTERM" or "signal N".
std::string signal_name(int signal);

}  // namespace nd
