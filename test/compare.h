// Comparison helpers for tests (CPU and CUDA): require_close copies two tensors of any device and
// dtype to host doubles, checks that their shapes agree and that every element satisfies
// |got - want| <= atol + rtol * |want| (NaN matches only NaN, infinities only themselves), and on
// the first mismatch FAILs with the caller's description, the index, both values, the number of
// bad elements and the largest absolute error. max_abs gives the scale of a tensor, for
// tolerances relative to the magnitude of a result. all_close and CHECK_ALL_CLOSE apply that bound
// to host vectors of doubles (kernel tests on raw arrays; NaN never matches) as a CHECK.
// Header-only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "test/catch.h"

namespace nd::test {

// Host copy of any tensor's values as doubles (row-major, whatever its device, dtype or strides).
inline std::vector<double> host_values(const nd::Tensor& t) {
  return t.detach().to_vector<double>();
}

// Largest |x| over the tensor (0 for an empty one); NaNs are ignored.
inline double max_abs(const nd::Tensor& t) {
  double m = 0;
  for (double v : host_values(t))
    if (!std::isnan(v)) m = std::max(m, std::abs(v));
  return m;
}

// Row-major multi-index of flat element i of `shape`, as "(a, b, c)".
inline std::string index_str(const nd::Shape& shape, int64_t i) {
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    const int64_t n = std::max<int64_t>(shape[size_t(d)], 1);
    idx[size_t(d)] = i % n;
    i /= n;
  }
  return nd::shape_str(idx);
}

inline void require_close(const nd::Tensor& got, const nd::Tensor& want, double rtol, double atol,
                          const std::string& what) {
  if (!got.defined() || !want.defined()) {
    FAIL(what << ": tensor undefined (got " << (got.defined() ? "defined" : "undefined")
              << ", want " << (want.defined() ? "defined" : "undefined") << ")");
  }
  if (got.shape() != want.shape()) {
    FAIL(what << ": shape " << nd::shape_str(got.shape()) << " differs from expected "
              << nd::shape_str(want.shape()));
  }
  const std::vector<double> g = host_values(got);
  const std::vector<double> w = host_values(want);
  int64_t bad = 0, first = -1;
  double max_err = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    bool ok;
    double err = 0;
    if (std::isnan(w[i]) || std::isnan(g[i])) {
      ok = std::isnan(w[i]) && std::isnan(g[i]);
    } else if (std::isinf(w[i]) || std::isinf(g[i])) {
      ok = g[i] == w[i];
    } else {
      err = std::abs(g[i] - w[i]);
      ok = err <= atol + rtol * std::abs(w[i]);
    }
    max_err = std::max(max_err, err);
    if (!ok) {
      ++bad;
      if (first < 0) first = int64_t(i);
    }
  }
  if (bad > 0) {
    const size_t f = size_t(first);
    std::ostringstream os;
    os << std::setprecision(9) << what << ": " << bad << " of " << w.size()
       << " elements differ (shape " << nd::shape_str(want.shape()) << ", rtol " << rtol
       << ", atol " << atol << "); first at flat index " << first << " "
       << index_str(want.shape(), first) << ": got " << g[f] << ", want " << w[f] << " (|diff| "
       << std::abs(g[f] - w[f]) << ", allowed " << atol + rtol * std::abs(w[f])
       << "); max abs error " << max_err;
    FAIL(os.str());
  }
}

// Exact equality (integer results, copies, casts).
inline void require_equal(const nd::Tensor& got, const nd::Tensor& want, const std::string& what) {
  require_close(got, want, 0.0, 0.0, what);
}

// For kernel tests on raw host arrays: whether every element satisfies
// |got - want| <= atol + rtol * |want| (a NaN on either side never matches, unlike require_close).
// `why` receives the first bad index with both values, the number of bad elements and the largest
// absolute error (infinite where a NaN is involved).
inline bool all_close(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                      double atol, std::string& why) {
  if (got.size() != want.size()) {
    why = "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
    return false;
  }
  int64_t bad = 0;
  double max_err = 0;
  std::ostringstream os;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    max_err = std::max(max_err, std::isnan(err) ? std::numeric_limits<double>::infinity() : err);
    if (!(err <= atol + rtol * std::abs(want[i]))) {
      if (bad == 0) os << "first bad index " << i << ": got " << got[i] << ", want " << want[i];
      ++bad;
    }
  }
  os << "; " << bad << " bad of " << got.size() << ", max abs error " << max_err << " (rtol "
     << rtol << ", atol " << atol << ")";
  why = os.str();
  return bad == 0;
}

// Empty when two state dicts hold the same names, dtypes, shapes and bytes; else what differs
// first in name order: a missing name, a dtype or shape, or the tensor's count of differing
// elements with its largest difference and where. (A failed bitwise comparison of whole state
// dicts would print every value: hundreds of MB for a large network.)
inline std::string first_difference(const std::map<std::string, nd::Tensor>& got,
                                    const std::map<std::string, nd::Tensor>& want) {
  for (const auto& [name, w] : want)
    if (!got.count(name)) return "tensor '" + name + "' is missing";
  for (const auto& [name, g] : got) {
    auto it = want.find(name);
    if (it == want.end()) return "unexpected tensor '" + name + "'";
    const nd::Tensor& w = it->second;
    if (g.dtype() != w.dtype() || g.shape() != w.shape())
      return "tensor '" + name + "' is " + nd::dtype_name(g.dtype()) + " " +
             nd::shape_str(g.shape()) + ", expected " + nd::dtype_name(w.dtype()) + " " +
             nd::shape_str(w.shape());
    const nd::Tensor gc = g.detach().contiguous(), wc = w.detach().contiguous();
    const size_t bytes = size_t(gc.numel()) * nd::dtype_size(gc.dtype());
    if (bytes == 0 || std::memcmp(gc.raw_data(), wc.raw_data(), bytes) == 0) continue;
    const std::vector<double> gv = host_values(gc), wv = host_values(wc);
    int64_t differing = 0, worst = 0;
    double largest = -1;
    for (size_t i = 0; i < gv.size(); ++i) {
      const double d = std::abs(gv[i] - wv[i]);
      const bool differs = !(gv[i] == wv[i]) && !(std::isnan(gv[i]) && std::isnan(wv[i]));
      if (!differs) continue;
      ++differing;
      if (!(d <= largest)) {  // NaN differences count as the largest
        largest = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
        worst = int64_t(i);
      }
    }
    std::ostringstream os;
    os << std::setprecision(9) << "tensor '" << name << "' " << nd::shape_str(w.shape()) << ": "
       << differing << " of " << gv.size() << " elements differ, the largest by " << largest
       << " at " << index_str(w.shape(), worst) << " (got " << gv[size_t(worst)] << ", want "
       << wv[size_t(worst)] << ")";
    if (differing == 0) os << " (the bytes differ: NaN payloads or signed zeros)";
    return os.str();
  }
  return "";
}

// Runs f, which must throw nd::Error, and checks that its message contains every part.
template <typename F>
void check_error_contains(F&& f, const std::vector<std::string>& parts) {
  std::string message;
  bool threw = false;
  try {
    f();
  } catch (const nd::Error& e) {
    threw = true;
    message = e.what();
  }
  INFO("error message: " << message);
  REQUIRE(threw);
  for (const std::string& part : parts) {
    INFO("expected in the message: " << part);
    CHECK(message.find(part) != std::string::npos);
  }
}

}  // namespace nd::test

// CHECK (not REQUIRE: the test goes on) that nd::test::all_close holds for two
// std::vector<double>, reporting its findings under `what`.
#define CHECK_ALL_CLOSE(got, want, rtol, atol, what)                           \
  do {                                                                         \
    std::string why_;                                                          \
    const bool ok_ = nd::test::all_close((got), (want), (rtol), (atol), why_); \
    INFO(what << ": " << why_);                                                \
    CHECK(ok_);                                                                \
  } while (0)
