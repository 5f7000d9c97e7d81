// The harness shared by the kernel microbenchmarks (nd-bench-ops, nd-bench-deconv): the command
// line both take (--device, --repeat, --warmup, --filter, --quick) and the run's header lines,
// timing of calls between two nd::synchronize (warm-up, then median and minimum), the check
// against the CPU reference (convert, relative_error), input helpers (leaf, uniform, dims, fmt),
// the result table, and the case loop that ends in "N cases, M failed" and the exit status.
// Each binary keeps its own Case struct (their fields differ); the templates below only need
// its `name` and `shape` strings.
#pragma once
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace nd::bench {

using Tensors = std::vector<Tensor>;

// ------------------------------------------------------------------------------ command line

struct CliSpec {
  const char* program;      // prefix of error messages and of the header: "nd-bench-ops"
  const char* description;  // first line of --help
  int cpu_repeat;           // default --repeat on the CPU (kCudaRepeat on CUDA)
  int cpu_warmup;           // default --warmup on the CPU (kCudaWarmup on CUDA)
};

constexpr int kCudaRepeat = 20;
constexpr int kCudaWarmup = 3;

struct Options {
  const char* program = "";
  Device dev;
  std::string device_name = "cpu";  // with the GPU's name on CUDA
  int repeat = 0, warmup = 0;       // the device's defaults unless given
  std::string filter;
  bool quick = false;
};

// Parses the command line and the device into `o`. Returns the exit status when main should
// stop now (--help, a bad flag, or a device this build or machine lacks, reported on stderr).
std::optional<int> parse_command_line(int argc, char** argv, const CliSpec& spec, Options& o);

// "<program>: <message>" on stderr.
void print_error(const Options& o, const std::string& message);

// make() builds the cases; keeps those whose name contains --filter. When make() throws or no
// case is left, prints why and returns false (exit status 1).
template <class Case, class Make>
bool select_cases(const Options& o, Make make, std::vector<Case>& cases) {
  try {
    for (Case& c : make())
      if (c.name.find(o.filter) != std::string::npos) cases.push_back(std::move(c));
  } catch (const std::exception& e) {
    print_error(o, e.what());
    return false;
  }
  if (cases.empty()) {
    print_error(o, "no case name contains '" + o.filter + "'");
    return false;
  }
  return true;
}

// The run's first lines: device, shapes, warm-up and repeat; what the check compares (with
// `tol_note` after "gradients") against a CPU reference in `ref`; how calls are timed. The
// caller adds its own notes and the blank line before the table.
void print_preamble(const Options& o, const std::string& tol_note, DType ref);

// ------------------------------------------------------------------------------ timing, checks

struct Timing {
  double median_ms = 0, min_ms = 0;
};

// Warm-up calls, then `repeat` timed calls, each between two synchronizes; the outputs of a call
// are kept alive until its clock stops so freeing them is not timed.
Timing time_calls(const std::function<Tensors()>& call, Device d, int warmup, int repeat);

// `work` (flops or bytes) per call in units of 1e9 per second at `ms` per call.
inline double giga_per_second(double work, double ms) {
  return work / (ms * 1e-3) / 1e9;
}

Tensors convert(const Tensors& in, Device d, DType t);

// Largest max|got - ref| / max|ref| over the outputs (absolute error where ref is all zero).
double relative_error(const Tensors& got, const Tensors& ref);

// A fresh leaf sharing t's storage, so every call accumulates gradients from zero.
Tensor leaf(const Tensor& t);

Tensor uniform(const Shape& s, Generator& g, double lo = -1, double hi = 1);

// "2x3x4"
std::string dims(const Shape& s);

// printf of one number.
std::string fmt(const char* f, double v);

// ------------------------------------------------------------------------------ table

struct Row {
  std::string name, shape, err, median, min, rate, baseline, anchor, status;
};

// A checked and timed case: rel_err as %.1e, the times as %.3f ms; the caller fills in the rest.
Row timed_row(const std::string& name, const std::string& shape, double err, const Timing& t);

// The widths of the columns that differ between the binaries.
struct Table {
  int name_width, shape_width, baseline_width;
  int anchor_width = 0;  // 0: no anchor column

  void print(const Row& r) const;
  void print_header() const;
};

// "\n<summary>: N cases, M failed"; the exit status.
int finish(const char* summary, size_t cases, int failed);

// Runs `body(c, seed)` on each case in order, with seeds 1, 2, ...; body prints the case's row and
// returns whether it passed. An exception fails the case with a row of "-" and "FAIL: what".
// Then prints "\n<summary>: N cases, M failed" and returns the exit status (1 when any failed).
template <class Case, class Body>
int run_cases(const std::vector<Case>& cases, const Table& table, const char* summary, Body body) {
  int failed = 0;
  uint64_t seed = 1;
  for (const Case& c : cases) {
    try {
      if (!body(c, seed++)) ++failed;
    } catch (const std::exception& e) {
      ++failed;
      table.print(
          {c.name, c.shape, "-", "-", "-", "-", "-", "-", std::string("FAIL: ") + e.what()});
    }
  }
  return finish(summary, cases.size(), failed);
}

}  // namespace nd::bench
