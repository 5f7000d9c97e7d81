// The real nd-train binary, killed and starved: SIGKILL at random moments and at chosen points of
// a checkpoint write (watched with inotify), then --resume, again and again: every resume works,
// no file it reads is torn, at most the current epoch is lost, and the weights end bitwise equal to
// an uninterrupted run. A checkpoint write that hits the file size limit (RLIMIT_FSIZE, as a full
// disk would) fails with a clear message, keeps the previous checkpoint and exits non-zero.
// SIGTERM and SIGINT stop after the step with the last checkpoint kept. Errors read
// "nd-train: error: ..." with source locations only under ND_DEBUG=1. The runs are a small MLP on
// generated CIFAR-format files, so each start takes milliseconds.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "apps/trainer.h"
#include "engine/random.h"
#include "io/safetensors.h"
#include "test/catch.h"
#include "test/run_fixtures.h"
#include "test/temp_dir.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nd::test::read_text;

namespace {

// CIFAR-10 files of n_train / n_test images (labels from the colour, so the MLP learns).
void write_small_cifar(const std::string& dir, int n_train, int n_test) {
  nd::Generator gen(5);
  auto write = [&](const std::string& path, int count) {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < count; ++i) {
      const int label = int(gen.below(10));
      out.put(char(label));
      for (int p = 0; p < 3072; ++p)
        out.put(char(uint8_t(20 * label + (p / 1024) * 10 + int(gen.below(40)))));
    }
  };
  for (int b = 1; b <= 5; ++b)
    write(dir + "/data_batch_" + std::to_string(b) + ".bin", n_train / 5);
  write(dir + "/test_batch.bin", n_test);
}

struct Child {
  pid_t pid = -1;
  std::string log;
};

// Starts nd-train with `args`, stdout and stderr into `log`; file_limit > 0 sets RLIMIT_FSIZE
// (with SIGXFSZ ignored, so writes past it fail with EFBIG as on a full disk); debug sets
// ND_DEBUG=1.
Child start(const std::vector<std::string>& args, const std::string& log, rlim_t file_limit = 0,
            bool debug = false) {
  Child c;
  c.log = log;
  std::vector<char*> argv;
  std::string binary = ND_TRAIN_BINARY;
  argv.push_back(binary.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  c.pid = fork();
  REQUIRE(c.pid >= 0);
  if (c.pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(120);
    dup2(fd, 1);
    dup2(fd, 2);
    if (debug) setenv("ND_DEBUG", "1", 1);
    if (file_limit > 0) {
      signal(SIGXFSZ, SIG_IGN);
      struct rlimit limit = {file_limit, file_limit};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    execv(argv[0], argv.data());
    _exit(121);
  }
  return c;
}

// The exit status (128 + signal when killed by one), failing the test after 120 s.
int wait_for(const Child& c) {
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (true) {
    int status = 0;
    const pid_t r = waitpid(c.pid, &status, WNOHANG);
    REQUIRE(r >= 0);
    if (r == c.pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (Clock::now() > deadline) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, &status, 0);
      FAIL("nd-train did not finish within 120 s; its output:\n" << read_text(c.log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool exited(const Child& c, int* status) {
  int s = 0;
  if (waitpid(c.pid, &s, WNOHANG) != c.pid) return false;
  *status = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
  return true;
}

int count_epoch_lines(const std::string& log) {
  static const std::regex line("(^|\n)epoch +[0-9]+ ");
  const std::string text = read_text(log);
  return int(
      std::distance(std::sregex_iterator(text.begin(), text.end(), line), std::sregex_iterator()));
}

// Watches a run directory for file events (inotify).
class DirWatch {
 public:
  explicit DirWatch(const std::string& dir) {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    REQUIRE(fd_ >= 0);
    REQUIRE(inotify_add_watch(fd_, dir.c_str(),
                              IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MODIFY) >= 0);
  }
  ~DirWatch() { ::close(fd_); }
  // Forgets the events so far (those of an earlier process).
  void drain() {
    alignas(inotify_event) char buf[4096];
    while (read(fd_, buf, sizeof buf) > 0) {
    }
  }
  // Waits up to `ms` for an event of `mask` on `name` (or, when `name` starts with '.', on a
  // name containing it); true when one came.
  bool wait(uint32_t mask, const std::string& name, int ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    alignas(inotify_event) char buf[4096];
    while (Clock::now() < deadline) {
      pollfd p = {fd_, POLLIN, 0};
      if (poll(&p, 1, 5) <= 0) continue;
      const ssize_t n = read(fd_, buf, sizeof buf);
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
        const std::string got = e->len > 0 ? e->name : "";
        const bool match = name[0] == '.' ? got.find(name) != std::string::npos : got == name;
        if ((e->mask & mask) && match) return true;
        at += ssize_t(sizeof(inotify_event) + e->len);
      }
    }
    return false;
  }

 private:
  int fd_ = -1;
};

std::vector<std::string> run_args(const std::string& data, int epochs) {
  return {"--dataset",    "cifar10",   "--data-dir", data,       "--arch",
          "mlp",          "--norm",    "bn",         "--epochs", std::to_string(epochs),
          "--batch-size", "32",        "--lr",       "0.05",     "--device",
          "cpu",          "--workers", "2",          "--seed",   "7"};
}

std::vector<std::string> with_output(std::vector<std::string> args, const std::string& dir) {
  args.push_back("--output");
  args.push_back(dir);
  return args;
}

std::vector<std::string> resume_args(const std::string& dir) {
  return {"--resume", dir, "--workers", "2"};
}

// The model in a training state, which must read (no torn file).
std::map<std::string, nd::Tensor> state_model(const std::string& dir) {
  std::map<std::string, nd::Tensor> model;
  for (auto& [name, t] : nd::io::load_safetensors(dir + "/training_state.safetensors"))
    if (name.rfind("model.", 0) == 0) model[name.substr(6)] = t;
  return model;
}

// summary.csv without the timing columns.
std::vector<std::string> summary_rows(const std::string& path) {
  std::vector<std::string> rows;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line))
    rows.push_back(line.substr(0, line.rfind(',', line.rfind(',') - 1)));
  return rows;
}

std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos)
      found.push_back(e.path().filename().string());
  return found;
}

}  // namespace

TEST_CASE("nd-train killed with SIGKILL at any moment resumes to the same weights", "[crash]") {
  nd::test::TempDir dir("crash");
  write_small_cifar(dir.path(), 640, 64);
  const int epochs = 5, wanted_kills = 15;
  const std::string straight = dir.file("straight");
  const auto t0 = Clock::now();
  REQUIRE(wait_for(start(with_output(run_args(dir.path(), epochs), straight),
                         dir.file("straight.log"))) == 0);
  const double run_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // Kill points: a random moment; the end of an epoch's steps (steps.csv flushed); the creation
  // of a checkpoint's temporary file (mid-write); its close (written, not yet renamed); the
  // rename of the training state (before last.safetensors is written). Each is the 1st or 2nd of
  // its kind in the launch (at least that many come before the run ends).
  struct Point {
    const char* what;
    uint32_t mask;
    const char* name;
    int per_epoch;
  };
  const Point points[] = {
      {"at a random moment", 0, "", 0},
      {"at the end of an epoch's steps", IN_MODIFY, "steps.csv", 1},
      {"while a checkpoint is written", IN_CREATE, ".safetensors.tmp.", 2},
      {"after a checkpoint is written, before its rename", IN_CLOSE_WRITE, ".safetensors.tmp.", 2},
      {"between the training state and last.safetensors", IN_MOVED_TO, "training_state.safetensors",
       1}};
  nd::Generator gen(2024);
  int kills = 0, launches = 0;
  std::string history;
  // Interrupted runs until enough kills (a launch may finish before its kill point).
  for (int r = 0; kills < wanted_kills; ++r) {
    REQUIRE(r < 10);
    const std::string run = dir.file("run" + std::to_string(r));
    fs::create_directories(run);
    DirWatch watch(run);
    int printed_before = 0;
    bool finished = false;
    while (!finished) {
      INFO(history);
      REQUIRE(launches++ < 200);
      const std::string log = dir.file("launch" + std::to_string(launches) + ".log");
      const bool resuming = fs::exists(run + "/config.json");
      watch.drain();
      const Child c =
          start(resuming ? resume_args(run) : with_output(run_args(dir.path(), epochs), run), log);
      int status = -1;
      if (kills < wanted_kills) {
        const Point& p = points[kills % 5];
        const int left = epochs - printed_before;
        if (p.mask == 0) {
          const double ms = gen.uniform(0.0, 0.8 * run_ms * left / epochs);
          const auto until = Clock::now() + std::chrono::microseconds(int64_t(ms * 1000));
          while (Clock::now() < until && !exited(c, &status))
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        } else {
          const int nth = 1 + int(gen.below(uint64_t(std::clamp(p.per_epoch * left, 1, 2))));
          for (int i = 0; i < nth && status < 0; ++i)
            while (!watch.wait(p.mask, p.name, 50) && status < 0) exited(c, &status);
        }
        if (status < 0) {
          kill(c.pid, SIGKILL);
          status = wait_for(c);
          ++kills;
          history += std::string("killed ") + p.what + "; ";
        }
      } else {
        status = wait_for(c);
      }
      const std::string text = read_text(log);
      INFO("launch output:\n" << text);
      finished = status == 0;
      if (!finished) REQUIRE(status == 128 + SIGKILL);  // only our kills stop it
      // The launch resumed from no less than what the ones before it had finished (an epoch is
      // printed after its checkpoint, so it may be ahead of what was printed).
      std::smatch m;
      int resumed_from = 0;
      if (resuming && std::regex_search(text, m, std::regex("resuming after epoch ([0-9]+)"))) {
        resumed_from = std::stoi(m[1]);
        CHECK(resumed_from >= printed_before);
      } else if (resuming && text.find("nd-train:") != std::string::npos) {
        CHECK(text.find("no checkpoint yet") != std::string::npos);
        CHECK(printed_before == 0);
      }
      CHECK(text.find("error") == std::string::npos);
      printed_before = std::max(printed_before, resumed_from + count_epoch_lines(log));
      history += "launch " + std::to_string(launches) + ": from " + std::to_string(resumed_from) +
                 ", " + std::to_string(count_epoch_lines(log)) + " epochs printed, status " +
                 std::to_string(status) + "; ";
      // Whatever is on disk reads: config.json and whole checkpoints, never torn files.
      if (fs::exists(run + "/config.json")) nd::resume_config(run);
      for (const char* f : {"training_state.safetensors", "last.safetensors", "best.safetensors"})
        if (fs::exists(run + "/" + f)) nd::io::load_safetensors(run + "/" + f);
    }
    INFO(history);
    CHECK(read_text(run + "/last.safetensors") == read_text(straight + "/last.safetensors"));
    nd::test::require_same_tensors(state_model(run), state_model(straight));
    CHECK(read_text(run + "/steps.csv") == read_text(straight + "/steps.csv"));
    CHECK(summary_rows(run + "/summary.csv") == summary_rows(straight + "/summary.csv"));
    CHECK(temporaries(run).empty());
  }
  CHECK(kills == wanted_kills);
}

TEST_CASE("a checkpoint write on a full disk fails clearly and keeps the previous checkpoint",
          "[crash]") {
  nd::test::TempDir dir("full_disk");
  write_small_cifar(dir.path(), 320, 64);
  const std::string run = dir.file("run");
  std::vector<std::string> args = with_output(run_args(dir.path(), 2), run);
  args.push_back("--stop-after");
  args.push_back("1");
  REQUIRE(wait_for(start(args, dir.file("first.log"))) == 0);
  const std::string state = read_text(run + "/training_state.safetensors"),
                    last = read_text(run + "/last.safetensors");
  REQUIRE(state.size() > 100'000);
  // Files may grow to 64 KB: config.json, summary.csv and steps.csv fit, a checkpoint does not.
  const Child c = start(resume_args(run), dir.file("full.log"), 64 * 1024);
  CHECK(wait_for(c) == 1);
  const std::string text = read_text(c.log);
  INFO(text);
  for (const char* part : {"nd-train: error: cannot write safetensors file", "File too large",
                           "free space (or raise the limit) and run again", "is unchanged",
                           "epoch 2 is lost", "the checkpoint of epoch 1 in"})
    CHECK(text.find(part) != std::string::npos);
  CHECK(text.find(".cpp:") == std::string::npos);  // no source locations without ND_DEBUG=1
  CHECK(read_text(run + "/training_state.safetensors") == state);
  CHECK(read_text(run + "/last.safetensors") == last);
  CHECK(temporaries(run).empty());
  // With room again, the run continues from that checkpoint.
  CHECK(wait_for(start(resume_args(run), dir.file("again.log"))) == 0);
  CHECK(read_text(dir.file("again.log")).find("resuming after epoch 1") != std::string::npos);
}

TEST_CASE("SIGTERM and SIGINT stop after the step and keep the last checkpoint", "[crash]") {
  nd::test::TempDir dir("sigterm");
  write_small_cifar(dir.path(), 640, 64);
  const int epochs = 4;
  const std::string straight = dir.file("straight"), run = dir.file("run");
  REQUIRE(wait_for(start(with_output(run_args(dir.path(), epochs), straight),
                         dir.file("straight.log"))) == 0);
  fs::create_directories(run);
  DirWatch watch(run);
  // Sends `signal` right after the launch's `checkpoints`-th checkpoint (0: once it has begun
  // writing its run files); the trainer then stops at the next step.
  auto stop = [&](const std::vector<std::string>& args, int signal, int checkpoints,
                  const std::string& log) {
    watch.drain();
    const Child c = start(args, log);
    if (checkpoints == 0) REQUIRE(watch.wait(IN_MOVED_TO, "steps.csv", 30000));
    for (int i = 0; i < checkpoints; ++i)
      REQUIRE(watch.wait(IN_MOVED_TO, "last.safetensors", 30000));
    kill(c.pid, signal);
    return wait_for(c);
  };
  SECTION("in the first epoch: nothing to keep") {
    CHECK(stop(with_output(run_args(dir.path(), epochs), run), SIGTERM, 0, dir.file("t0.log")) ==
          128 + SIGTERM);
    const std::string text = read_text(dir.file("t0.log"));
    INFO(text);
    CHECK(text.find("nd-train: interrupted by SIGTERM during epoch 1; no epoch finished; "
                    "nd-train --resume " +
                    run + " starts the run again") != std::string::npos);
  }
  SECTION("SIGTERM after epoch 1, SIGINT after epoch 2, then resumed to the end") {
    CHECK(stop(with_output(run_args(dir.path(), epochs), run), SIGTERM, 1, dir.file("t1.log")) ==
          128 + SIGTERM);
    std::string text = read_text(dir.file("t1.log"));
    INFO(text);
    CHECK(text.find("nd-train: interrupted by SIGTERM during epoch 2; the last checkpoint "
                    "(epoch 1) in " +
                    run + " is complete: continue with nd-train --resume " + run) !=
          std::string::npos);
    CHECK(nd::weights_epoch(run + "/last.safetensors") == 1);
    CHECK(stop(resume_args(run), SIGINT, 1, dir.file("t2.log")) == 128 + SIGINT);
    text = read_text(dir.file("t2.log"));
    INFO(text);
    CHECK(text.find("resuming after epoch 1") != std::string::npos);
    CHECK(text.find("interrupted by SIGINT during epoch 3; the last checkpoint (epoch 2)") !=
          std::string::npos);
    CHECK(nd::weights_epoch(run + "/last.safetensors") == 2);
    CHECK(wait_for(start(resume_args(run), dir.file("t3.log"))) == 0);
    CHECK(read_text(run + "/last.safetensors") == read_text(straight + "/last.safetensors"));
    CHECK(temporaries(run).empty());
  }
}

TEST_CASE("errors read 'nd-train: error: ...'; source locations only with ND_DEBUG=1",
          "[crash][messages]") {
  nd::test::TempDir dir("messages");
  write_small_cifar(dir.path(), 32, 8);
  std::vector<std::string> args = run_args(dir.path(), 1);
  args.push_back("--momentum");
  args.push_back("1.5");
  CHECK(wait_for(start(args, dir.file("plain.log"))) == 1);
  CHECK(read_text(dir.file("plain.log")) ==
        "nd-train: error: --momentum must be in [0, 1), got 1.5\n");
  CHECK(wait_for(start(args, dir.file("debug.log"), 0, true)) == 1);
  const std::string debug = read_text(dir.file("debug.log"));
  CHECK(std::regex_search(debug, std::regex("^nd-train: error: train_config\\.cpp:[0-9]+: "
                                            "--momentum must be in \\[0, 1\\), got 1\\.5\n$")));
  // A missing data directory: one message naming it and what to do, no nested prefixes.
  CHECK(wait_for(start({"--dataset", "cifar10", "--data-dir", dir.file("none"), "--device", "cpu"},
                       dir.file("nodata.log"))) == 1);
  const std::string nodata = read_text(dir.file("nodata.log"));
  INFO(nodata);
  CHECK(nodata.rfind("nd-train: error: CIFAR-10 data directory " + dir.file("none") +
                         " not found: download https://",
                     0) == 0);
  CHECK(nodata.find(".cpp:") == std::string::npos);
  // A flag the parser rejects.
  CHECK(wait_for(start({"--epochs", "many"}, dir.file("flag.log"))) == 2);
  CHECK(read_text(dir.file("flag.log")).rfind("nd-train: error: ", 0) == 0);
}
