// CUDA against the CPU reference (both float32) for the Newton-Schulz inverse square root and the
// weight folding of deconv.h: forward outputs (D and every slice of `saved`: Y_i, Z_i, a; w' and
// bias') and backward gradients (dA; dw, dD, dmu) from the same host inputs. Newton-Schulz runs
// over (count, n, iters) from n = 1 to 1152, on both sides of the small-n kernel (n = 32 / 33),
// with many small matrices (depthwise 9x9 and 7x7) and iters 0, 1, 2, 5, on SPD inputs shaped like
// covariances (some nearly singular, eps 1e-5); the small-n kernels also with their grid capped
// below the matrix count, so each block loops over several matrices. Folding covers groups 1 with
// 1/2/3/8 blocks, 2 groups and depthwise (with a channel multiplier), with and without bias. Each
// case is its own SECTION named by its parameters; n >= 576 is left out under ND_TEST_SMALL=1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "engine/device_scratch.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/cuda_runtime_api.h"
#include "kernels/deconv.h"
#include "kernels/matmul.h"
#include "test/catch.h"
#include "test/cuda_cases.h"

namespace {

namespace k = nd::kernels;
using FVec = std::vector<float>;

const nd::Device kCuda = nd::Device::cuda(0);

// ---- tolerances: 1e-3 relative plus 2e-5 of the range's largest magnitude.
// Float32 on both sides; the CPU and cuBLAS add in different orders. Derivation: the iteration
// starts from A / ||A||_F, whose spectrum lies in [0, 1]; the scalar map of T = 5 steps
// (y <- y (3 - z y) / 2, z <- (3 - z y) z / 2 from y = lambda, z = 1) reaches 7.6 and has slope
// <= 115 (at lambda near 0, where covariance spectra crowd), so for a symmetric input a relative
// perturbation of A grows by <= ~15 relative to max|D| (the Frechet derivative of a spectral
// function is bounded by its largest divided difference, i.e. its largest slope). Each step's 3
// products of length n add ~sqrt(n) u (u = 2^-24) that later steps amplify the same way: for
// n = 1152, ~(1 + 3 T) 15 sqrt(n) u ~ 5e-4 of max|D| at the steepest slope, far less where
// eigenvalues are larger. Measured against a double reference, the float CPU results stay within
// ~5e-6 of the largest element (up to n = 1152, 5 iterations, nearly singular inputs); the GPU
// runs the same float algorithm in another order, so GPU - CPU is bounded by twice that, 1e-5:
// 2e-5 of the largest element plus 1e-3 relative keeps a 2x margin over the measured worst case,
// while any indexing or transpose slip (errors of order one) or TF32 (2^-11 relative per product,
// ~5e-4) fails. The fold is a product of length nf with the same bound.
constexpr double kRtol = 1e-3;
constexpr double kAtolScale = 2e-5;

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

nd::Tensor to_cuda(const FVec& v) {
  return nd::Tensor::from_vector<float>(v, {static_cast<int64_t>(v.size())}).to(kCuda);
}

nd::Tensor cuda_empty(int64_t n) {
  return nd::Tensor::empty({std::max<int64_t>(n, 1)}, nd::DType::F32, kCuda);
}

FVec to_host(const nd::Tensor& t, int64_t n) {
  FVec v = t.to_vector<float>();
  v.resize(static_cast<size_t>(n));
  return v;
}

// Elements [begin, end) of got and want agree when |got - want| <= rtol |want| + atol_scale *
// max |want| over the range.
void check_close(const FVec& got, const FVec& want, int64_t begin, int64_t end,
                 const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double max_want = 0.0;
  for (int64_t i = begin; i < end; ++i) max_want = std::max(max_want, std::fabs(double(want[i])));
  double worst = 0.0;
  int64_t worst_at = begin;
  bool finite = true;
  for (int64_t i = begin; i < end; ++i) {
    if (!std::isfinite(got[i])) finite = false;
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double tol = kRtol * std::fabs(double(want[i])) + kAtolScale * max_want;
    const double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? 1e30 : 0.0);
    if (ratio > worst) {
      worst = ratio;
      worst_at = i;
    }
  }
  INFO("worst element " << worst_at - begin << " of " << end - begin << ": got "
                        << (end > begin ? got[worst_at] : 0.0f) << ", want "
                        << (end > begin ? want[worst_at] : 0.0f) << " (error / tolerance " << worst
                        << ", max |want| " << max_want << ")");
  CHECK(finite);
  CHECK(worst <= 1.0);
}

void check_close(const FVec& got, const FVec& want, const std::string& what) {
  check_close(got, want, 0, static_cast<int64_t>(want.size()), what);
}

FVec normal_vec(int64_t size, nd::Generator& gen, double scale = 1.0) {
  FVec v(static_cast<size_t>(size));
  for (float& x : v) x = static_cast<float>(scale * gen.normal());
  return v;
}

// count covariance-like SPD matrices X^T X / rows + shift I with X (rows, n) standard normal.
FVec spd_batch(int64_t count, int64_t n, int64_t rows, double shift, nd::Generator& gen) {
  FVec out(static_cast<size_t>(count * n * n));
  std::vector<double> x(static_cast<size_t>(rows * n)), a(static_cast<size_t>(n * n));
  for (int64_t m = 0; m < count; ++m) {
    for (double& v : x) v = gen.normal();
    k::GemmShape g;
    g.trans_a = true;
    g.m = g.n = n;
    g.k = rows;
    g.lda = g.ldb = g.ldc = n;
    k::gemm_cpu<double>(g, 1.0 / double(rows), x.data(), x.data(), 0.0, a.data());
    for (int64_t i = 0; i < n; ++i) a[i * n + i] += shift;
    for (int64_t e = 0; e < n * n; ++e) out[m * n * n + e] = static_cast<float>(a[e]);
  }
  return out;
}

struct NsCase {
  int64_t count, n, iters;
  int64_t rows;  // of the X behind each covariance (< n: singular before the shift)
  double shift;
};

}  // namespace

namespace {

void compare_newton_schulz(const NsCase& c, uint64_t seed) {
  nd::Generator gen(seed);
  const cudaStream_t st = k::cuda_stream(0);
  const int64_t count = c.count, n = c.n, iters = c.iters, size = count * n * n;
  const int64_t saved_elems = k::newton_schulz_saved_elems(count, n, iters);
  const FVec a = spd_batch(count, n, c.rows, c.shift, gen);
  const FVec r = normal_vec(size, gen);
  FVec d_cpu(static_cast<size_t>(size)), saved_cpu(static_cast<size_t>(saved_elems)),
      da_cpu(static_cast<size_t>(size));
  k::newton_schulz_forward_cpu<float>(count, n, iters, a.data(), d_cpu.data(), saved_cpu.data());
  k::newton_schulz_backward_cpu<float>(count, n, iters, a.data(), saved_cpu.data(), r.data(),
                                       da_cpu.data());

  const nd::Tensor a_dev = to_cuda(a), r_dev = to_cuda(r);
  nd::Tensor d_dev = cuda_empty(size), saved_dev = cuda_empty(saved_elems),
             da_dev = cuda_empty(size), d2_dev = cuda_empty(size);
  {
    nd::DeviceScratch scratch(kCuda);
    k::newton_schulz_forward_cuda(count, n, iters, a_dev.data<float>(), d_dev.data<float>(),
                                  saved_dev.data<float>(), scratch, st);
  }
  {
    nd::DeviceScratch scratch(kCuda);
    k::newton_schulz_backward_cuda(count, n, iters, a_dev.data<float>(), saved_dev.data<float>(),
                                   r_dev.data<float>(), da_dev.data<float>(), scratch, st);
  }
  {
    nd::DeviceScratch scratch(kCuda);  // saved == nullptr: intermediates in scratch
    k::newton_schulz_forward_cuda(count, n, iters, a_dev.data<float>(), d2_dev.data<float>(),
                                  nullptr, scratch, st);
  }
  k::cuda_synchronize(st);
  const FVec d_gpu = to_host(d_dev, size), saved_gpu = to_host(saved_dev, saved_elems),
             da_gpu = to_host(da_dev, size), d2_gpu = to_host(d2_dev, size);
  check_close(d_gpu, d_cpu, "D");
  check_close(d2_gpu, d_cpu, "D (forward without saved)");
  const int64_t S = size;
  for (int64_t i = 0; i < iters; ++i) {
    check_close(saved_gpu, saved_cpu, 2 * i * S, (2 * i + 1) * S, str("saved Y_", i));
    check_close(saved_gpu, saved_cpu, (2 * i + 1) * S, (2 * i + 2) * S, str("saved Z_", i));
  }
  check_close(saved_gpu, saved_cpu, 2 * iters * S, saved_elems, "saved a");
  check_close(da_gpu, da_cpu, "dA");
}

// Each case in its own SECTION, its data made inside it from a seed of the case's index.
void run_newton_schulz_cases(const std::vector<NsCase>& cases, uint64_t seed) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const NsCase& c = cases[i];
    // n >= 576: 2 * iters + 1 saved matrices of n^2 pass 1M elements.
    if (c.n >= 576 && nd::test::small_sizes_only()) continue;
    const std::string name = str("count ", c.count, " n ", c.n, " iters ", c.iters, " X rows ",
                                 c.rows, " shift ", c.shift);
    SECTION(name) {
      INFO(name);
      compare_newton_schulz(c, seed + i);
    }
  }
}

}  // namespace

// n <= 32: one thread block per matrix runs the whole iteration in shared memory.
TEST_CASE("cuda newton-schulz on small matrices (the shared-memory kernel) matches the CPU",
          "[cuda][deconv_ns][memcheck][racecheck]") {
  const std::vector<NsCase> cases = {
      {1, 1, 5, 3, 1e-5},   {7, 1, 5, 2, 0.5},      {3, 2, 5, 4, 1e-5},  {96, 9, 1, 30, 1e-5},
      {96, 9, 5, 30, 1e-5}, {1000, 9, 1, 12, 1e-5}, {5, 27, 5, 60, 0.5}, {3, 16, 0, 40, 1e-5},
      {3, 32, 5, 64, 1e-5}, {4, 31, 2, 15, 1e-5},
  };
  run_newton_schulz_cases(cases, 31);
}

namespace {

// Lowers the small-n kernels' grid cap for one scope, so each block loops over several matrices.
class MatrixGridCap {
 public:
  explicit MatrixGridCap(int cap) : previous_(k::set_newton_schulz_matrix_grid_cap(cap)) {}
  ~MatrixGridCap() { k::set_newton_schulz_matrix_grid_cap(previous_); }
  MatrixGridCap(const MatrixGridCap&) = delete;
  MatrixGridCap& operator=(const MatrixGridCap&) = delete;

 private:
  int previous_;
};

}  // namespace

// The shared-memory kernels with fewer blocks than matrices (past 2^20 matrices in real use):
// each block runs the next matrix over shared memory the previous one left.
TEST_CASE("cuda newton-schulz small kernel looping over matrices per block matches the CPU",
          "[cuda][deconv_ns][memcheck][racecheck]") {
  const std::vector<NsCase> cases = {
      {7, 5, 5, 8, 1e-5}, {7, 9, 2, 12, 0.5},   {7, 4, 1, 6, 1e-5},
      {7, 3, 0, 5, 0.5},  {7, 32, 3, 40, 1e-5},
  };
  for (const int cap : {1, 3}) {
    SECTION(str("grid cap ", cap)) {
      const MatrixGridCap guard(cap);
      run_newton_schulz_cases(cases, 231);
    }
  }
}

// n > 32: cuBLAS products with elementwise kernels and two-stage norm reductions between them.
TEST_CASE("cuda newton-schulz on large matrices (the cuBLAS path) matches the CPU",
          "[cuda][deconv_ns][memcheck][racecheck]") {
  const std::vector<NsCase> cases = {
      {2, 33, 5, 70, 1e-5},     {4, 33, 1, 70, 0.5},     {3, 33, 2, 20, 1e-5},
      {2, 40, 0, 80, 0.5},      {50, 49, 5, 100, 1e-5},  {4, 64, 5, 32, 1e-5},
      {2, 200, 3, 400, 1e-5},   {1, 576, 5, 1152, 1e-5}, {1, 576, 5, 300, 1e-5},
      {1, 1152, 5, 2304, 1e-5},
  };
  run_newton_schulz_cases(cases, 131);
}

namespace {

struct FoldCase {
  int64_t o, nf, blocks, groups;
  bool bias;
};

}  // namespace

TEST_CASE("cuda fold forward and backward match the CPU", "[cuda][deconv_ns][memcheck]") {
  const std::vector<FoldCase> cases = {
      {1, 1, 1, 1, true},   {5, 7, 1, 1, false},   {16, 18, 2, 1, true},    {12, 27, 3, 1, false},
      {33, 64, 1, 1, true}, {64, 576, 8, 1, true}, {128, 576, 1, 1, false}, {8, 36, 1, 2, true},
      {32, 9, 1, 32, true}, {64, 9, 1, 32, false}, {24, 49, 1, 24, true},   {960, 9, 1, 960, true},
  };
  const cudaStream_t st = k::cuda_stream(0);
  for (size_t i = 0; i < cases.size(); ++i) {
    const FoldCase& c = cases[i];
    k::FoldShape s;
    s.o = c.o;
    s.nf = c.nf;
    s.blocks = c.blocks;
    s.groups = c.groups;
    const std::string name = str("O ", s.o, " nf ", s.nf, " blocks ", s.blocks, " groups ",
                                 s.groups, c.bias ? " with bias" : " no bias");
    // Each case in its own SECTION, its data made inside it from a seed of the case's index.
    SECTION(name) {
      INFO(name);
      nd::Generator gen(32 + i);
      const int64_t wsize = s.o * s.row(), dsize = s.groups * s.nf * s.nf, msize = s.groups * s.nf;
      const FVec w = normal_vec(wsize, gen), bias = normal_vec(s.o, gen),
                 d = normal_vec(dsize, gen, 1.0 / std::sqrt(double(s.nf))),
                 mu = normal_vec(msize, gen), dw_out = normal_vec(wsize, gen),
                 dbias_out = normal_vec(s.o, gen);
      FVec w_out_cpu(static_cast<size_t>(wsize)), b_out_cpu(static_cast<size_t>(s.o)),
          dw_cpu(static_cast<size_t>(wsize)), dd_cpu(static_cast<size_t>(dsize)),
          dmu_cpu(static_cast<size_t>(msize));
      k::fold_forward_cpu<float>(s, w.data(), c.bias ? bias.data() : nullptr, d.data(), mu.data(),
                                 w_out_cpu.data(), b_out_cpu.data());
      k::fold_backward_cpu<float>(s, w.data(), d.data(), mu.data(), w_out_cpu.data(), dw_out.data(),
                                  dbias_out.data(), dw_cpu.data(), dd_cpu.data(), dmu_cpu.data());

      const nd::Tensor w_dev = to_cuda(w), bias_dev = to_cuda(bias), d_dev = to_cuda(d),
                       mu_dev = to_cuda(mu), dw_out_dev = to_cuda(dw_out),
                       dbias_out_dev = to_cuda(dbias_out);
      nd::Tensor w_out_dev = cuda_empty(wsize), b_out_dev = cuda_empty(s.o),
                 dw_dev = cuda_empty(wsize), dd_dev = cuda_empty(dsize),
                 dmu_dev = cuda_empty(msize);
      {
        nd::DeviceScratch scratch(kCuda);
        k::fold_forward_cuda(s, w_dev.data<float>(), c.bias ? bias_dev.data<float>() : nullptr,
                             d_dev.data<float>(), mu_dev.data<float>(), w_out_dev.data<float>(),
                             b_out_dev.data<float>(), scratch, st);
      }
      {
        nd::DeviceScratch scratch(kCuda);
        k::fold_backward_cuda(s, w_dev.data<float>(), d_dev.data<float>(), mu_dev.data<float>(),
                              w_out_dev.data<float>(), dw_out_dev.data<float>(),
                              dbias_out_dev.data<float>(), dw_dev.data<float>(),
                              dd_dev.data<float>(), dmu_dev.data<float>(), scratch, st);
      }
      k::cuda_synchronize(st);
      check_close(to_host(w_out_dev, wsize), w_out_cpu, "w'");
      check_close(to_host(b_out_dev, s.o), b_out_cpu, "bias'");
      check_close(to_host(dw_dev, wsize), dw_cpu, "dw");
      check_close(to_host(dd_dev, dsize), dd_cpu, "dD");
      check_close(to_host(dmu_dev, msize), dmu_cpu, "dmu");
    }
  }
}
