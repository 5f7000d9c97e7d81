// nd-fuzz: the harnesses without libFuzzer. `nd-fuzz replay DIR` runs every harness over its
// seeds and over the regression inputs in DIR/<harness>/ (what fuzzing found; the CTest
// fuzz_regressions; every seed must be accepted, so the seeds reach past the readers' first
// checks), `nd-fuzz run HARNESS FILE...` runs chosen files, `nd-fuzz seeds HARNESS DIR`
// writes the seed corpus, `nd-fuzz list` prints each harness with its -max_len. A rejected input
// is fine; an exception other than nd::Error, a broken invariant (abort) or a crash is a failure.
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "core/error.h"
#include "test/fuzz/harnesses.h"

namespace fs = std::filesystem;
using nd::fuzz::Bytes;
using nd::fuzz::Harness;

namespace {

// Runs one input; false (after saying which) when it threw anything but nd::Error, or when
// `must_accept` and the reader rejected it.
bool run_one(const Harness& h, const std::string& label, const Bytes& input,
             bool must_accept = false) {
  try {
    if (h.run(input.data(), input.size()) || !must_accept) return true;
    std::cerr << h.name << ": " << label << ": the reader rejects this valid input\n";
    return false;
  } catch (const nd::Error& e) {
    std::cerr << h.name << ": " << label << ": nd::Error escaped the harness: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << h.name << ": " << label << ": exception other than nd::Error: " << e.what()
              << "\n";
  }
  return false;
}

int replay(const std::string& root) {
  int failures = 0;
  for (const Harness& h : nd::fuzz::harnesses()) {
    int seeds = 0, regressions = 0;
    for (const auto& [name, bytes] : h.seeds()) {
      failures += !run_one(h, "seed " + name, bytes, /*must_accept=*/true);
      ++seeds;
    }
    const fs::path dir = fs::path(root) / h.name;
    if (fs::is_directory(dir)) {
      for (const auto& entry : fs::directory_iterator(dir)) {
        if (!entry.is_regular_file()) continue;
        // Named before it runs: a crash leaves this line as the last one.
        std::cerr << h.name << ": " << entry.path().filename().string() << std::endl;
        failures += !run_one(h, entry.path().string(), nd::fuzz::read_file(entry.path().string()));
        ++regressions;
      }
    }
    std::cout << h.name << ": " << seeds << " seeds, " << regressions << " regression inputs\n";
  }
  std::cout << (failures ? "FAILED: " : "ok: ") << failures << " failing inputs" << std::endl;
  return failures ? 1 : 0;
}

int usage() {
  std::cerr << "usage: nd-fuzz replay DIR | run HARNESS FILE... | seeds HARNESS DIR | list\n";
  return 2;
}

const Harness& harness_or_exit(const std::string& name) {
  const Harness* h = nd::fuzz::find_harness(name);
  if (!h) {
    std::cerr << "nd-fuzz: error: unknown harness '" << name << "'; see nd-fuzz list\n";
    std::exit(2);
  }
  return *h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string command = argv[1];
  if (command == "list") {
    for (const Harness& h : nd::fuzz::harnesses()) std::cout << h.name << " " << h.max_len << "\n";
    return 0;
  }
  if (command == "replay" && argc == 3) return replay(argv[2]);
  if (command == "run" && argc >= 4) {
    const Harness& h = harness_or_exit(argv[2]);
    int failures = 0;
    for (int i = 3; i < argc; ++i) failures += !run_one(h, argv[i], nd::fuzz::read_file(argv[i]));
    return failures ? 1 : 0;
  }
  if (command == "seeds" && argc == 4) {
    const Harness& h = harness_or_exit(argv[2]);
    fs::create_directories(argv[3]);
    for (const auto& [name, bytes] : h.seeds()) {
      std::ofstream out(fs::path(argv[3]) / ("seed_" + name), std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    }
    return 0;
  }
  return usage();
}
