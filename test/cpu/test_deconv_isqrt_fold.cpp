// Tests of the CPU Newton-Schulz inverse square root and weight folding of deconv.h
// (network-deconvolution.md section 1, steps 5 and 7):
//   - with many iterations D converges to A^(-1/2) of a well-conditioned SPD matrix: D A D = I and
//     D equals V diag(1/sqrt(w)) V^T from a Jacobi eigendecomposition written here (double);
//   - with a few iterations D, and every saved Y_i, Z_i and a (the documented layout), equal a
//     plain triple-loop implementation of the iteration written here;
//   - central-difference gradient checks (double) of the backward through loss = sum(R * D),
//     perturbing single entries of A (the backward treats A as a general matrix);
//   - fold forward against an explicit construction over (o, block, position), groups 1 with
//     1/2/3 blocks, 2 groups and depthwise (nf = 9), with and without bias; gradient checks of
//     the fold backward w.r.t. w, d, mu and bias through sum(R1 * w') + sum(R2 * bias');
//   - float instantiations against double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/random.h"
#include "kernels/deconv.h"
#include "test/catch.h"

namespace {

namespace k = nd::kernels;
using Vec = std::vector<double>;

Vec normal_vec(int64_t size, nd::Generator& gen, double scale = 1.0) {
  Vec v(static_cast<size_t>(size));
  for (double& x : v) x = scale * gen.normal();
  return v;
}

// count SPD matrices A = M M^T / n + shift I.
Vec spd_batch(int64_t count, int64_t n, nd::Generator& gen, double shift = 0.5) {
  Vec out(static_cast<size_t>(count * n * n));
  for (int64_t m = 0; m < count; ++m) {
    const Vec mm = normal_vec(n * n, gen);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double s = r == c ? shift : 0.0;
        for (int64_t k2 = 0; k2 < n; ++k2) s += mm[r * n + k2] * mm[c * n + k2] / double(n);
        out[(m * n + r) * n + c] = s;
      }
  }
  return out;
}

// C = A B for n x n row-major matrices, plain loops.
Vec naive_mul(int64_t n, const double* a, const double* b) {
  Vec c(static_cast<size_t>(n * n), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t col = 0; col < n; ++col) {
      double s = 0.0;
      for (int64_t k2 = 0; k2 < n; ++k2) s += a[r * n + k2] * b[k2 * n + col];
      c[r * n + col] = s;
    }
  return c;
}

double max_abs(const double* a, int64_t size) {
  double m = 0.0;
  for (int64_t i = 0; i < size; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

double max_abs_diff(const double* a, const double* b, int64_t size) {
  double m = 0.0;
  for (int64_t i = 0; i < size; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Cyclic Jacobi eigendecomposition of a symmetric n x n matrix: a = V diag(w) V^T, V's columns
// the eigenvectors.
void jacobi_eigen(int64_t n, Vec a, Vec& w, Vec& v) {
  v.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
    if (off < 1e-30) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int64_t k2 = 0; k2 < n; ++k2) {  // columns p, q of A <- A J
          const double akp = a[k2 * n + p], akq = a[k2 * n + q];
          a[k2 * n + p] = c * akp - s * akq;
          a[k2 * n + q] = s * akp + c * akq;
        }
        for (int64_t k2 = 0; k2 < n; ++k2) {  // rows p, q <- J^T A
          const double apk = a[p * n + k2], aqk = a[q * n + k2];
          a[p * n + k2] = c * apk - s * aqk;
          a[q * n + k2] = s * apk + c * aqk;
        }
        for (int64_t k2 = 0; k2 < n; ++k2) {  // V <- V J
          const double vkp = v[k2 * n + p], vkq = v[k2 * n + q];
          v[k2 * n + p] = c * vkp - s * vkq;
          v[k2 * n + q] = s * vkp + c * vkq;
        }
      }
  }
  w.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[i] = a[i * n + i];
}

// The coupled iteration written plainly for one matrix; fills the Y and Z entering each step.
struct NaiveNs {
  Vec d;
  std::vector<Vec> ys, zs;
  double a = 0.0;
};

NaiveNs naive_newton_schulz(int64_t n, int64_t iters, const double* in) {
  NaiveNs r;
  double ss = 0.0;
  for (int64_t e = 0; e < n * n; ++e) ss += in[e] * in[e];
  r.a = std::sqrt(ss);
  Vec y(static_cast<size_t>(n * n)), z(static_cast<size_t>(n * n), 0.0);
  for (int64_t e = 0; e < n * n; ++e) y[e] = in[e] / r.a;
  for (int64_t i = 0; i < n; ++i) z[i * n + i] = 1.0;
  for (int64_t it = 0; it < iters; ++it) {
    r.ys.push_back(y);
    r.zs.push_back(z);
    Vec t = naive_mul(n, z.data(), y.data());
    for (int64_t rr = 0; rr < n; ++rr)
      for (int64_t c = 0; c < n; ++c) t[rr * n + c] = ((rr == c ? 3.0 : 0.0) - t[rr * n + c]) / 2.0;
    Vec y2 = naive_mul(n, y.data(), t.data());
    Vec z2 = naive_mul(n, t.data(), z.data());
    y = y2;
    z = z2;
  }
  r.d = z;
  for (double& x : r.d) x /= std::sqrt(r.a);
  return r;
}

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Central-difference check of analytic gradient `grad` of loss(x) w.r.t. every element of x.
// Returns the largest |numeric - analytic| / (1 + |analytic|).
double gradcheck_max_err(Vec& x, const Vec& grad, const std::function<double()>& loss,
                         double h = 1e-5) {
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    const double num = (lp - lm) / (2.0 * h);
    worst = std::max(worst, std::fabs(num - grad[i]) / (1.0 + std::fabs(grad[i])));
  }
  return worst;
}

double weighted_sum(const Vec& r, const Vec& y) {
  double s = 0.0;
  for (size_t i = 0; i < r.size(); ++i) s += r[i] * y[i];
  return s;
}

}  // namespace

TEST_CASE("newton-schulz converges to the inverse square root with many iterations",
          "[deconv_ns]") {
  nd::Generator gen(11);
  const int64_t iters = 40, count = 2;
  for (int64_t n : {1, 3, 9, 27, 64}) {
    INFO("n " << n << ", iters " << iters);
    const Vec a = spd_batch(count, n, gen);
    Vec d(a.size());
    Vec saved(static_cast<size_t>(k::newton_schulz_saved_elems(count, n, iters)));
    k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), d.data(), saved.data());
    for (int64_t m = 0; m < count; ++m) {
      INFO("matrix " << m);
      const double* am = a.data() + m * n * n;
      const double* dm = d.data() + m * n * n;
      // D A D = I
      Vec dad = naive_mul(n, dm, naive_mul(n, am, dm).data());
      for (int64_t i = 0; i < n; ++i) dad[i * n + i] -= 1.0;
      CHECK(max_abs(dad.data(), n * n) < 1e-8);
      // D = V diag(w^-1/2) V^T
      Vec w, v;
      jacobi_eigen(n, Vec(am, am + n * n), w, v);
      Vec want(static_cast<size_t>(n * n), 0.0);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c)
          for (int64_t e = 0; e < n; ++e)
            want[r * n + c] += v[r * n + e] * v[c * n + e] / std::sqrt(w[e]);
      CHECK(max_abs_diff(dm, want.data(), n * n) <
            1e-8 * std::max(1.0, max_abs(want.data(), n * n)));
    }
  }
}

TEST_CASE("newton-schulz with few iterations equals the plain iteration, saved layout included",
          "[deconv_ns]") {
  nd::Generator gen(12);
  for (int64_t n : {1, 2, 5, 9, 16, 33}) {
    for (int64_t iters : {0, 1, 2, 5}) {
      const int64_t count = 3, nn = n * n, S = count * nn;
      INFO("n " << n << ", iters " << iters);
      const Vec a = spd_batch(count, n, gen);
      Vec d(a.size());
      Vec saved(static_cast<size_t>(k::newton_schulz_saved_elems(count, n, iters)), -7.0);
      k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), d.data(), saved.data());
      double worst = 0.0, worst_saved = 0.0;
      for (int64_t m = 0; m < count; ++m) {
        const NaiveNs want = naive_newton_schulz(n, iters, a.data() + m * nn);
        const double tol = 1e-12 * std::max(1.0, max_abs(want.d.data(), nn));
        worst = std::max(worst, max_abs_diff(d.data() + m * nn, want.d.data(), nn) / tol);
        for (int64_t i = 0; i < iters; ++i) {
          worst_saved = std::max(
              worst_saved, max_abs_diff(saved.data() + 2 * i * S + m * nn, want.ys[i].data(), nn) /
                               (1e-12 * std::max(1.0, max_abs(want.ys[i].data(), nn))));
          worst_saved = std::max(
              worst_saved,
              max_abs_diff(saved.data() + (2 * i + 1) * S + m * nn, want.zs[i].data(), nn) /
                  (1e-12 * std::max(1.0, max_abs(want.zs[i].data(), nn))));
        }
        CHECK(std::fabs(saved[2 * iters * S + m] - want.a) <= 1e-12 * want.a);
      }
      CHECK(worst <= 1.0);
      CHECK(worst_saved <= 1.0);
      // saved == nullptr keeps the intermediates internally and gives the same D.
      Vec d2(a.size());
      k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), d2.data(), nullptr);
      CHECK(max_abs_diff(d.data(), d2.data(), S) == 0.0);
    }
  }
}

TEST_CASE("newton-schulz backward matches central differences", "[deconv_ns]") {
  nd::Generator gen(13);
  const int64_t count = 2;
  for (int64_t n : {1, 2, 5, 9}) {
    for (int64_t iters : {0, 1, 2, 5}) {
      INFO("n " << n << ", iters " << iters);
      const int64_t size = count * n * n;
      Vec a = spd_batch(count, n, gen);
      const Vec r = normal_vec(size, gen);
      Vec saved(static_cast<size_t>(k::newton_schulz_saved_elems(count, n, iters)));
      Vec d(static_cast<size_t>(size)), da(static_cast<size_t>(size), 123.0);
      k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), d.data(), saved.data());
      k::newton_schulz_backward_cpu<double>(count, n, iters, a.data(), saved.data(), r.data(),
                                            da.data());
      auto loss = [&] {
        Vec dd(static_cast<size_t>(size));
        k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), dd.data(), nullptr);
        return weighted_sum(r, dd);
      };
      const double err = gradcheck_max_err(a, da, loss);
      INFO("max |numeric - analytic| / (1 + |analytic|) = " << err);
      CHECK(err < 1e-6);
    }
  }
}

TEST_CASE("newton-schulz float instantiation tracks double", "[deconv_ns]") {
  nd::Generator gen(14);
  for (int64_t n : {1, 9, 27, 64}) {
    const int64_t count = 2, iters = 5, size = count * n * n;
    INFO("n " << n);
    const Vec a = spd_batch(count, n, gen, 1e-2);
    const Vec r = normal_vec(size, gen);
    const int64_t saved_elems = k::newton_schulz_saved_elems(count, n, iters);
    Vec d(static_cast<size_t>(size)), da(static_cast<size_t>(size)),
        saved(static_cast<size_t>(saved_elems));
    k::newton_schulz_forward_cpu<double>(count, n, iters, a.data(), d.data(), saved.data());
    k::newton_schulz_backward_cpu<double>(count, n, iters, a.data(), saved.data(), r.data(),
                                          da.data());
    std::vector<float> af(a.begin(), a.end()), rf(r.begin(), r.end());
    std::vector<float> df(static_cast<size_t>(size)), daf(static_cast<size_t>(size)),
        savedf(static_cast<size_t>(saved_elems));
    k::newton_schulz_forward_cpu<float>(count, n, iters, af.data(), df.data(), savedf.data());
    k::newton_schulz_backward_cpu<float>(count, n, iters, af.data(), savedf.data(), rf.data(),
                                         daf.data());
    const Vec d32(df.begin(), df.end()), da32(daf.begin(), daf.end());
    const double ed = max_abs_diff(d32.data(), d.data(), size) / max_abs(d.data(), size);
    const double eg = max_abs_diff(da32.data(), da.data(), size) / max_abs(da.data(), size);
    INFO("relative (to max) error of D " << ed << ", of dA " << eg);
    CHECK(ed < 1e-4);
    CHECK(eg < 1e-4);
  }
}

namespace {

// Explicit construction of the fold: w'[o, q*blocks + j] = sum_p w[o, p*blocks + j] D_g[p][q],
// bias'[o] = bias[o] - sum over j, q of w'[o, q*blocks + j] mu_g[q].
void direct_fold(const k::FoldShape& s, const Vec& w, const double* bias, const Vec& d,
                 const Vec& mu, Vec& w_out, Vec& bias_out) {
  const int64_t L = s.row(), og = s.o / s.groups;
  w_out.assign(static_cast<size_t>(s.o * L), 0.0);
  bias_out.assign(static_cast<size_t>(s.o), 0.0);
  for (int64_t o = 0; o < s.o; ++o) {
    const int64_t g = o / og;
    double b = bias ? bias[o] : 0.0;
    for (int64_t j = 0; j < s.blocks; ++j)
      for (int64_t q = 0; q < s.nf; ++q) {
        double acc = 0.0;
        for (int64_t p = 0; p < s.nf; ++p)
          acc += w[o * L + p * s.blocks + j] * d[(g * s.nf + p) * s.nf + q];
        w_out[o * L + q * s.blocks + j] = acc;
        b -= acc * mu[g * s.nf + q];
      }
    bias_out[o] = b;
  }
}

struct FoldCase {
  k::FoldShape s;
  const char* what;
};

std::vector<FoldCase> fold_cases() {
  std::vector<FoldCase> c;
  auto add = [&](int64_t o, int64_t nf, int64_t blocks, int64_t groups, const char* what) {
    k::FoldShape s;
    s.o = o;
    s.nf = nf;
    s.blocks = blocks;
    s.groups = groups;
    c.push_back({s, what});
  };
  add(3, 4, 1, 1, "groups 1, 1 block");
  add(4, 5, 2, 1, "groups 1, 2 blocks");
  add(5, 6, 3, 1, "groups 1, 3 blocks");
  add(6, 5, 1, 2, "2 groups");
  add(6, 9, 1, 6, "depthwise 3x3");
  add(12, 9, 1, 6, "depthwise 3x3, channel multiplier 2");
  return c;
}

std::string fold_name(const FoldCase& fc) {
  return str(fc.what, " (O ", fc.s.o, ", nf ", fc.s.nf, ", blocks ", fc.s.blocks, ", groups ",
             fc.s.groups, ")");
}

}  // namespace

TEST_CASE("fold forward equals the explicit construction", "[deconv_ns]") {
  nd::Generator gen(21);
  for (const FoldCase& fc : fold_cases()) {
    for (bool with_bias : {true, false}) {
      const k::FoldShape& s = fc.s;
      INFO(fold_name(fc) << (with_bias ? ", with bias" : ", no bias"));
      const Vec w = normal_vec(s.o * s.row(), gen);
      const Vec bias = normal_vec(s.o, gen);
      const Vec d = normal_vec(s.groups * s.nf * s.nf, gen);
      const Vec mu = normal_vec(s.groups * s.nf, gen);
      Vec want_w, want_b;
      direct_fold(s, w, with_bias ? bias.data() : nullptr, d, mu, want_w, want_b);
      Vec got_w(want_w.size(), -5.0), got_b(want_b.size(), -5.0);
      k::fold_forward_cpu<double>(s, w.data(), with_bias ? bias.data() : nullptr, d.data(),
                                  mu.data(), got_w.data(), got_b.data());
      CHECK(max_abs_diff(got_w.data(), want_w.data(), s.o * s.row()) < 1e-12);
      CHECK(max_abs_diff(got_b.data(), want_b.data(), s.o) < 1e-12);
      // float instantiation
      std::vector<float> wf(w.begin(), w.end()), bf(bias.begin(), bias.end()),
          df(d.begin(), d.end()), mf(mu.begin(), mu.end());
      std::vector<float> owf(want_w.size()), obf(want_b.size());
      k::fold_forward_cpu<float>(s, wf.data(), with_bias ? bf.data() : nullptr, df.data(),
                                 mf.data(), owf.data(), obf.data());
      const Vec ow(owf.begin(), owf.end()), ob(obf.begin(), obf.end());
      CHECK(max_abs_diff(ow.data(), want_w.data(), s.o * s.row()) < 1e-4);
      CHECK(max_abs_diff(ob.data(), want_b.data(), s.o) < 1e-4);
    }
  }
}

TEST_CASE("fold backward matches central differences", "[deconv_ns]") {
  nd::Generator gen(22);
  for (const FoldCase& fc : fold_cases()) {
    const k::FoldShape& s = fc.s;
    INFO(fold_name(fc));
    const int64_t wsize = s.o * s.row(), dsize = s.groups * s.nf * s.nf, msize = s.groups * s.nf;
    Vec w = normal_vec(wsize, gen), bias = normal_vec(s.o, gen), d = normal_vec(dsize, gen),
        mu = normal_vec(msize, gen);
    const Vec r1 = normal_vec(wsize, gen), r2 = normal_vec(s.o, gen);
    Vec w_out(static_cast<size_t>(wsize)), b_out(static_cast<size_t>(s.o));
    k::fold_forward_cpu<double>(s, w.data(), bias.data(), d.data(), mu.data(), w_out.data(),
                                b_out.data());
    Vec dw(static_cast<size_t>(wsize), 9.0), dd(static_cast<size_t>(dsize), 9.0),
        dmu(static_cast<size_t>(msize), 9.0);
    k::fold_backward_cpu<double>(s, w.data(), d.data(), mu.data(), w_out.data(), r1.data(),
                                 r2.data(), dw.data(), dd.data(), dmu.data());
    auto loss = [&] {
      Vec wo(static_cast<size_t>(wsize)), bo(static_cast<size_t>(s.o));
      k::fold_forward_cpu<double>(s, w.data(), bias.data(), d.data(), mu.data(), wo.data(),
                                  bo.data());
      return weighted_sum(r1, wo) + weighted_sum(r2, bo);
    };
    CHECK(gradcheck_max_err(w, dw, loss) < 1e-7);
    CHECK(gradcheck_max_err(d, dd, loss) < 1e-7);
    CHECK(gradcheck_max_err(mu, dmu, loss) < 1e-7);
    CHECK(gradcheck_max_err(bias, r2, loss) < 1e-7);  // the bias gradient is dbias_out itself
  }
}
