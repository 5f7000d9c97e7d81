// Comparison helpers for tests (CPU and CUDA): require_close copies two tensors of any device and
// dtype to host doubles, checks that their shapes agree and that every element satisfies
// |got - want| <= atol + rtol * |want| (NaN matches only NaN, infinities only themselves), and on
// a mismatch FAILs with the caller's description, the first and the worst bad element with both
// values, the number of bad elements and the largest absolute error; check_close (and
// check_within, check_equal) report the same without ending the test. max_abs gives the scale of a
// tensor, for tolerances relative to the magnitude of a result. all_close and CHECK_ALL_CLOSE apply
// that bound to host vectors of doubles (kernel tests on raw arrays; NaN never matches) as a CHECK.
// Header-only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
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

namespace detail {

// Empty when every element of `got` satisfies |got - want| <= atol + rtol * |want| + bound[i]
// (bound: an optional per-element allowance of want's shape); otherwise the failure message of
// require_close and check_close: the caller's description, the number of bad elements, the first
// and the worst (largest error / allowed) of them with both values, and the largest abs error.
inline std::string close_mismatch(const nd::Tensor& got, const nd::Tensor& want, double rtol,
                                  double atol, const nd::Tensor* bound, const std::string& what) {
  std::ostringstream os;
  if (!got.defined() || !want.defined()) {
    os << what << ": tensor undefined (got " << (got.defined() ? "defined" : "undefined")
       << ", want " << (want.defined() ? "defined" : "undefined") << ")";
    return os.str();
  }
  if (got.shape() != want.shape()) {
    os << what << ": shape " << nd::shape_str(got.shape()) << " differs from expected "
       << nd::shape_str(want.shape());
    return os.str();
  }
  if (bound && bound->shape() != want.shape()) {
    os << what << ": the bound's shape " << nd::shape_str(bound->shape()) << " is not "
       << nd::shape_str(want.shape());
    return os.str();
  }
  const std::vector<double> g = host_values(got);
  const std::vector<double> w = host_values(want);
  const std::vector<double> b = bound ? host_values(*bound) : std::vector<double>();
  auto allowed = [&](size_t i) { return atol + rtol * std::abs(w[i]) + (bound ? b[i] : 0.0); };
  int64_t bad = 0, first = -1, worst = -1;
  double max_err = 0, worst_ratio = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    bool ok;
    double err = 0;
    if (std::isnan(w[i]) || std::isnan(g[i])) {
      ok = std::isnan(w[i]) && std::isnan(g[i]);
    } else if (std::isinf(w[i]) || std::isinf(g[i])) {
      ok = g[i] == w[i];
    } else {
      err = std::abs(g[i] - w[i]);
      ok = err <= allowed(i);
    }
    max_err = std::max(max_err, err);
    if (!ok) {
      ++bad;
      if (first < 0) first = int64_t(i);
      const double ratio = std::isfinite(err) && err > 0 && allowed(i) > 0
                               ? err / allowed(i)
                               : std::numeric_limits<double>::infinity();
      if (worst < 0 || ratio > worst_ratio) worst = int64_t(i), worst_ratio = ratio;
    }
  }
  if (bad == 0) return {};
  auto element = [&](int64_t i) {
    std::ostringstream e;
    e << std::setprecision(9) << "flat index " << i << " " << index_str(want.shape(), i) << ": got "
      << g[size_t(i)] << ", want " << w[size_t(i)] << " (|diff| "
      << std::abs(g[size_t(i)] - w[size_t(i)]) << ", allowed " << allowed(size_t(i)) << ")";
    return e.str();
  };
  os << std::setprecision(9) << what << ": " << bad << " of " << w.size()
     << " elements differ (shape " << nd::shape_str(want.shape()) << ", rtol " << rtol << ", atol "
     << atol << (bound ? ", plus a per-element bound" : "") << "); first at " << element(first);
  if (worst != first) os << "; worst at " << element(worst);
  os << "; max abs error " << max_err;
  return os.str();
}

}  // namespace detail

// FAILs (ends the test case or section) unless |got - want| <= atol + rtol * |want| everywhere.
inline void require_close(const nd::Tensor& got, const nd::Tensor& want, double rtol, double atol,
                          const std::string& what) {
  const std::string mismatch = detail::close_mismatch(got, want, rtol, atol, nullptr, what);
  if (!mismatch.empty()) FAIL(mismatch);
}

// The same check and message as require_close, but non-fatal (FAIL_CHECK): the test goes on, so
// a network or layer compared in many tensors reports every mismatching one. Returns whether the
// tensors agreed.
inline bool check_close(const nd::Tensor& got, const nd::Tensor& want, double rtol, double atol,
                        const std::string& what) {
  const std::string mismatch = detail::close_mismatch(got, want, rtol, atol, nullptr, what);
  if (!mismatch.empty()) FAIL_CHECK(mismatch);
  return mismatch.empty();
}

// Non-fatal check against a per-element error bound (a tensor of want's shape), for results
// whose rounding error is bounded element by element (e.g. K u sum_k |a_ik b_kj| for a product).
inline bool check_within(const nd::Tensor& got, const nd::Tensor& want, const nd::Tensor& bound,
                         const std::string& what) {
  const std::string mismatch = detail::close_mismatch(got, want, 0.0, 0.0, &bound, what);
  if (!mismatch.empty()) FAIL_CHECK(mismatch);
  return mismatch.empty();
}

// Exact equality (integer results, copies, casts).
inline void require_equal(const nd::Tensor& got, const nd::Tensor& want, const std::string& what) {
  require_close(got, want, 0.0, 0.0, what);
}

inline bool check_equal(const nd::Tensor& got, const nd::Tensor& want, const std::string& what) {
  return check_close(got, want, 0.0, 0.0, what);
}

// For every name of `want` (parameter gradients, buffers: `kind` says which): checks that `got`
// has it and calls check(got tensor, want tensor, "<kind> <name>"), all non-fatal; and that
// `got` has no names `want` lacks.
template <typename Check>
void check_each_named(const std::map<std::string, nd::Tensor>& got,
                      const std::map<std::string, nd::Tensor>& want, const std::string& kind,
                      Check check) {
  CHECK(got.size() == want.size());
  for (const auto& [name, w] : want) {
    INFO(kind << " " << name);
    const auto it = got.find(name);
    CHECK(it != got.end());
    if (it != got.end()) check(it->second, w, kind + " " + name);
  }
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
