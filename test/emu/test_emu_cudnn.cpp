// The emulator's cuDNN stand-in against plain double loops written here: forward, backward data,
// backward filter, bias and tensor add on shapes with stride, padding, dilation and groups; the
// adjoint identity between the three passes; descriptor validation, workspace enforcement,
// algorithm lists and TF32 math.
#include <cudnn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "test/catch.h"

namespace {

struct Shape {
  int n, c, h, w, k, r, s;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups;
  int oh() const { return (h + 2 * pad_h - (r - 1) * dil_h - 1) / stride_h + 1; }
  int ow() const { return (w + 2 * pad_w - (s - 1) * dil_w - 1) / stride_w + 1; }
  size_t x_count() const { return size_t(n) * c * h * w; }
  size_t w_count() const { return size_t(k) * (c / groups) * r * s; }
  size_t y_count() const { return size_t(n) * k * oh() * ow(); }
};

const Shape kShapes[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // plain 3x3, same padding
    {2, 4, 9, 8, 6, 3, 3, 1, 1, 2, 2, 1, 1, 1},   // stride 2
    {1, 3, 10, 9, 2, 3, 3, 2, 2, 1, 1, 2, 2, 1},  // dilation 2
    {2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},   // 2 groups
    {2, 5, 8, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5},   // depthwise
    {2, 8, 5, 5, 4, 1, 1, 0, 0, 2, 2, 1, 1, 1},   // 1x1, stride 2
    {1, 2, 7, 9, 3, 2, 3, 0, 1, 1, 2, 1, 1, 1},   // asymmetric kernel, padding and stride
    {1, 3, 6, 5, 2, 3, 2, 1, 0, 1, 1, 1, 1, 1},   // 3x2 kernel, stride 1
    {2, 2, 9, 8, 3, 5, 5, 2, 1, 1, 1, 1, 1, 1},   // 5x5, uneven padding
};

std::vector<float> random_vector(size_t count, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = dist(gen);
  return v;
}

// Device buffers are only read and written through cudaMemcpy (host access faults by design).
struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t b) : bytes(b) { REQUIRE(cudaMalloc(&p, b ? b : 1) == cudaSuccess); }
  explicit DeviceBuffer(const std::vector<float>& v) : DeviceBuffer(v.size() * sizeof(float)) {
    upload(v);
  }
  ~DeviceBuffer() { (void)cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<float>& v) {
    REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice) ==
            cudaSuccess);
  }
  std::vector<float> download() const {
    std::vector<float> v(bytes / sizeof(float));
    REQUIRE(cudaMemcpy(v.data(), p, v.size() * sizeof(float), cudaMemcpyDeviceToHost) ==
            cudaSuccess);
    return v;
  }
  float* f() const { return static_cast<float*>(p); }
};

// ---- the reference: one loop nest, read three ways ----------------------------------------------

// Calls visit(x index, w index, y index) for every product term of the convolution.
template <typename Visit>
void for_each_term(const Shape& s, Visit visit) {
  const int cg = s.c / s.groups, kg = s.k / s.groups;
  for (int n = 0; n < s.n; ++n)
    for (int k = 0; k < s.k; ++k)
      for (int oy = 0; oy < s.oh(); ++oy)
        for (int ox = 0; ox < s.ow(); ++ox)
          for (int cc = 0; cc < cg; ++cc)
            for (int ky = 0; ky < s.r; ++ky)
              for (int kx = 0; kx < s.s; ++kx) {
                const int iy = oy * s.stride_h - s.pad_h + ky * s.dil_h;
                const int ix = ox * s.stride_w - s.pad_w + kx * s.dil_w;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                const int c = (k / kg) * cg + cc;
                visit(((size_t(n) * s.c + c) * s.h + iy) * s.w + ix,
                      ((size_t(k) * cg + cc) * s.r + ky) * s.s + kx,
                      ((size_t(n) * s.k + k) * s.oh() + oy) * s.ow() + ox);
              }
}

std::vector<double> ref_forward(const Shape& s, const std::vector<float>& x,
                                const std::vector<float>& w) {
  std::vector<double> y(s.y_count(), 0.0);
  for_each_term(s, [&](size_t xi, size_t wi, size_t yi) { y[yi] += double(x[xi]) * w[wi]; });
  return y;
}

std::vector<double> ref_backward_data(const Shape& s, const std::vector<float>& w,
                                      const std::vector<float>& dy) {
  std::vector<double> dx(s.x_count(), 0.0);
  for_each_term(s, [&](size_t xi, size_t wi, size_t yi) { dx[xi] += double(w[wi]) * dy[yi]; });
  return dx;
}

std::vector<double> ref_backward_filter(const Shape& s, const std::vector<float>& x,
                                        const std::vector<float>& dy) {
  std::vector<double> dw(s.w_count(), 0.0);
  for_each_term(s, [&](size_t xi, size_t wi, size_t yi) { dw[wi] += double(x[xi]) * dy[yi]; });
  return dw;
}

// |got - want| <= tol * (1 + |want|) everywhere; returns the worst ratio to that bound.
double worst_error(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]) / (tol * (1.0 + std::fabs(want[i])));
    worst = std::isnan(e) ? 1e300 : std::max(worst, e);
  }
  return worst;
}

// Rounds to 11 significant bits, ties to even (the default rounding of nearbyint).
float tf32(float v) {
  int e = 0;
  const double m = std::frexp(double(v), &e);
  return float(std::ldexp(std::nearbyint(std::ldexp(m, 11)), e - 11));
}

// ---- descriptors for one shape ----------------------------------------------------------------

struct Conv {
  cudnnHandle_t h = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Shape s;

  explicit Conv(const Shape& shape, cudnnMathType_t math = CUDNN_FMA_MATH) : s(shape) {
    REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&bias) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateFilterDescriptor(&w) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateConvolutionDescriptor(&conv) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.c, s.h,
                                       s.w) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.k, s.oh(),
                                       s.ow()) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.k, 1, 1) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.k, s.c / s.groups,
                                       s.r, s.s) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolution2dDescriptor(conv, s.pad_h, s.pad_w, s.stride_h, s.stride_w, s.dil_h,
                                            s.dil_w, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolutionGroupCount(conv, s.groups) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolutionMathType(conv, math) == CUDNN_STATUS_SUCCESS);
  }
  ~Conv() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(bias);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroy(h);
  }

  // An algorithm list: max_count's worth requested from get with the descriptors a, b, c.
  template <typename Perf, typename A, typename B, typename C>
  std::vector<Perf> algos(cudnnStatus_t (*max_count)(cudnnHandle_t, int*),
                          cudnnStatus_t (*get)(cudnnHandle_t, A, B, cudnnConvolutionDescriptor_t, C,
                                               int, int*, Perf*),
                          A a, B b, C c) const {
    int max = 0, got = 0;
    REQUIRE(max_count(h, &max) == CUDNN_STATUS_SUCCESS);
    std::vector<Perf> p(max);
    REQUIRE(get(h, a, b, conv, c, max, &got, p.data()) == CUDNN_STATUS_SUCCESS);
    p.resize(got);
    return p;
  }
  std::vector<cudnnConvolutionFwdAlgoPerf_t> forward_algos() const {
    return algos(cudnnGetConvolutionForwardAlgorithmMaxCount,
                 cudnnGetConvolutionForwardAlgorithm_v7, x, w, y);
  }
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> backward_data_algos() const {
    return algos(cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
                 cudnnGetConvolutionBackwardDataAlgorithm_v7, w, y, x);
  }
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> backward_filter_algos() const {
    return algos(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount,
                 cudnnGetConvolutionBackwardFilterAlgorithm_v7, x, y, w);
  }

  // One pass with its workspace queried from workspace and allocated: inputs in_a (descriptor a)
  // and in_b (b) into out (c), read back after a sync.
  template <typename A, typename B, typename C, typename Algo>
  std::vector<float> run(cudnnStatus_t (*workspace)(cudnnHandle_t, A, B,
                                                    cudnnConvolutionDescriptor_t, C, Algo, size_t*),
                         cudnnStatus_t (*pass)(cudnnHandle_t, const void*, A, const void*, B,
                                               const void*, cudnnConvolutionDescriptor_t, Algo,
                                               void*, size_t, const void*, C, void*),
                         A a, const DeviceBuffer& in_a, B b, const DeviceBuffer& in_b, C c,
                         DeviceBuffer& out, Algo algo, float alpha, float beta) {
    size_t bytes = 0;
    REQUIRE(workspace(h, a, b, conv, c, algo, &bytes) == CUDNN_STATUS_SUCCESS);
    DeviceBuffer ws(bytes);
    REQUIRE(pass(h, &alpha, a, in_a.p, b, in_b.p, conv, algo, bytes ? ws.p : nullptr, bytes, &beta,
                 c, out.p) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    return out.download();
  }
  std::vector<float> forward(const DeviceBuffer& dx, const DeviceBuffer& dw, DeviceBuffer& dy,
                             cudnnConvolutionFwdAlgo_t algo, float alpha = 1, float beta = 0) {
    return run(cudnnGetConvolutionForwardWorkspaceSize, cudnnConvolutionForward, x, dx, w, dw, y,
               dy, algo, alpha, beta);
  }
  std::vector<float> backward_data(const DeviceBuffer& dw, const DeviceBuffer& ddy,
                                   DeviceBuffer& ddx, cudnnConvolutionBwdDataAlgo_t algo,
                                   float alpha = 1, float beta = 0) {
    return run(cudnnGetConvolutionBackwardDataWorkspaceSize, cudnnConvolutionBackwardData, w, dw, y,
               ddy, x, ddx, algo, alpha, beta);
  }
  std::vector<float> backward_filter(const DeviceBuffer& dx, const DeviceBuffer& ddy,
                                     DeviceBuffer& ddw, cudnnConvolutionBwdFilterAlgo_t algo,
                                     float alpha = 1, float beta = 0) {
    return run(cudnnGetConvolutionBackwardFilterWorkspaceSize, cudnnConvolutionBackwardFilter, x,
               dx, y, ddy, w, ddw, algo, alpha, beta);
  }
};

std::vector<float> nan_vector(size_t count) {
  return std::vector<float>(count, std::nanf(""));
}

std::vector<double> blend(const std::vector<double>& conv, const std::vector<float>& old,
                          double alpha, double beta) {
  std::vector<double> out(conv.size());
  for (size_t i = 0; i < conv.size(); ++i) out[i] = alpha * conv[i] + beta * old[i];
  return out;
}

}  // namespace

TEST_CASE("emu cudnn: every algorithm of every pass matches the double loops", "[emu][cudnn]") {
  for (const Shape& s : kShapes) {
    CAPTURE(s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.stride_h, s.stride_w, s.dil_h, s.groups);
    Conv cv(s);
    const auto x = random_vector(s.x_count(), 1), w = random_vector(s.w_count(), 2);
    const auto dy = random_vector(s.y_count(), 3);
    DeviceBuffer dx_in(x), dw_in(w), ddy_in(dy);
    const auto want_y = ref_forward(s, x, w);
    const auto want_dx = ref_backward_data(s, w, dy);
    const auto want_dw = ref_backward_filter(s, x, dy);

    int tried = 0;
    // Each usable algorithm of one pass into count floats: with beta = 0 over NaNs (which must
    // not be read), then blended by alpha and beta into old contents drawn from seed.
    const auto try_all = [&](const auto& perfs, const auto& pass, size_t count,
                             const std::vector<double>& want, unsigned seed, float alpha,
                             float beta) {
      for (const auto& p : perfs) {
        if (p.status != CUDNN_STATUS_SUCCESS) continue;
        CAPTURE(int(p.algo));
        DeviceBuffer out(nan_vector(count));
        CHECK(worst_error(pass(out, p.algo, 1.0f, 0.0f), want, 1e-6) < 1.0);
        const auto old = random_vector(count, seed);
        out.upload(old);
        CHECK(worst_error(pass(out, p.algo, alpha, beta), blend(want, old, alpha, beta), 1e-6) <
              1.0);
        ++tried;
      }
    };
    try_all(
        cv.forward_algos(),
        [&](DeviceBuffer& out, cudnnConvolutionFwdAlgo_t algo, float alpha, float beta) {
          return cv.forward(dx_in, dw_in, out, algo, alpha, beta);
        },
        s.y_count(), want_y, 4, 0.5f, -2.0f);
    try_all(
        cv.backward_data_algos(),
        [&](DeviceBuffer& out, cudnnConvolutionBwdDataAlgo_t algo, float alpha, float beta) {
          return cv.backward_data(dw_in, ddy_in, out, algo, alpha, beta);
        },
        s.x_count(), want_dx, 5, 2.0f, 1.0f);
    try_all(
        cv.backward_filter_algos(),
        [&](DeviceBuffer& out, cudnnConvolutionBwdFilterAlgo_t algo, float alpha, float beta) {
          return cv.backward_filter(dx_in, ddy_in, out, algo, alpha, beta);
        },
        s.w_count(), want_dw, 6, 1.0f, 0.25f);
    CHECK(tried >= 7);  // at least 3 forward, 2 backward-data and 2 backward-filter algorithms

    // Bias gradient: the sum of dy over (n, h, w).
    std::vector<double> want_db(s.k, 0.0);
    for (int n = 0; n < s.n; ++n)
      for (int k = 0; k < s.k; ++k)
        for (int i = 0; i < s.oh() * s.ow(); ++i)
          want_db[k] += dy[(size_t(n) * s.k + k) * s.oh() * s.ow() + i];
    DeviceBuffer db(nan_vector(s.k));
    const float one = 1.0f, zero = 0.0f;
    REQUIRE(cudnnConvolutionBackwardBias(cv.h, &one, cv.y, ddy_in.p, &zero, cv.bias, db.p) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(worst_error(db.download(), want_db, 1e-6) < 1.0);
  }
}

TEST_CASE("emu cudnn: <conv(x), dy> = <x, bwd_data(dy)> = <w, bwd_filter(x, dy)>", "[emu][cudnn]") {
  for (const Shape& s : kShapes) {
    Conv cv(s);
    const auto x = random_vector(s.x_count(), 11), w = random_vector(s.w_count(), 12);
    const auto dy = random_vector(s.y_count(), 13);
    DeviceBuffer dx_in(x), dw_in(w), ddy_in(dy), y_out(s.y_count() * 4), dx_out(s.x_count() * 4),
        dw_out(s.w_count() * 4);
    const auto y = cv.forward(dx_in, dw_in, y_out, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
    const auto gx = cv.backward_data(dw_in, ddy_in, dx_out, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
    const auto gw = cv.backward_filter(dx_in, ddy_in, dw_out, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
    double a = 0, b = 0, c = 0, scale = 0;
    for (size_t i = 0; i < y.size(); ++i)
      a += double(y[i]) * dy[i], scale += std::fabs(y[i] * dy[i]);
    for (size_t i = 0; i < x.size(); ++i) b += double(x[i]) * gx[i];
    for (size_t i = 0; i < w.size(); ++i) c += double(w[i]) * gw[i];
    CHECK(std::fabs(a - b) <= 1e-6 * scale);
    CHECK(std::fabs(a - c) <= 1e-6 * scale);
  }
}

TEST_CASE("emu cudnn: descriptors reject bad parameters as cuDNN does", "[emu][cudnn]") {
  cudnnTensorDescriptor_t t;
  cudnnFilterDescriptor_t f;
  cudnnConvolutionDescriptor_t c;
  REQUIRE(cudnnCreateTensorDescriptor(&t) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateFilterDescriptor(&f) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateConvolutionDescriptor(&c) == CUDNN_STATUS_SUCCESS);
  const auto NCHW = CUDNN_TENSOR_NCHW;
  const auto F = CUDNN_DATA_FLOAT;
  CHECK(cudnnSetTensor4dDescriptor(t, NCHW, F, 0, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptor(t, NCHW, F, 1, -1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptor(t, NCHW, F, 1, 1, 1, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptor(t, NCHW, CUDNN_DATA_DOUBLE, 1, 1, 1, 1) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(cudnnSetTensor4dDescriptor(t, cudnnTensorFormat_t(7), F, 1, 1, 1, 1) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptorEx(t, F, 2, 2, 2, 2, 1, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetFilter4dDescriptor(f, F, NCHW, 0, 1, 3, 3) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetFilter4dDescriptor(f, F, NCHW, 1, 1, -3, 3) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_HALF, NCHW, 1, 1, 3, 3) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  const auto X = CUDNN_CROSS_CORRELATION;
  CHECK(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, X, F) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, X, F) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, -2, 1, 1, X, F) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 0, 1, X, F) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 1, cudnnConvolutionMode_t(2), F) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionGroupCount(c, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionMathType(c, cudnnMathType_t(4)) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 1, 1, 1, 1, 1, 1, X, F) == CUDNN_STATUS_SUCCESS);

  // A descriptor that was never set is refused where it is used.
  REQUIRE(cudnnSetTensor4dDescriptor(t, NCHW, F, 1, 4, 5, 5) == CUDNN_STATUS_SUCCESS);
  int n, ch, h, w;
  cudnnFilterDescriptor_t unset;
  REQUIRE(cudnnCreateFilterDescriptor(&unset) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(c, t, unset, &n, &ch, &h, &w) ==
        CUDNN_STATUS_BAD_PARAM);

  // Input channels must be filter channels x groups, and groups must divide the filters.
  REQUIRE(cudnnSetFilter4dDescriptor(f, F, NCHW, 6, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(c, t, f, &n, &ch, &h, &w) == CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnSetConvolutionGroupCount(c, 2) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(c, t, f, &n, &ch, &h, &w) == CUDNN_STATUS_SUCCESS);
  CHECK((n == 1 && ch == 6 && h == 5 && w == 5));
  REQUIRE(cudnnSetFilter4dDescriptor(f, F, NCHW, 5, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(c, t, f, &n, &ch, &h, &w) == CUDNN_STATUS_BAD_PARAM);
  // A dilated kernel larger than the padded input.
  REQUIRE(cudnnSetFilter4dDescriptor(f, F, NCHW, 6, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 3, 1, X, F) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(c, t, f, &n, &ch, &h, &w) == CUDNN_STATUS_BAD_PARAM);

  cudnnDestroyFilterDescriptor(unset);
  cudnnDestroyConvolutionDescriptor(c);
  cudnnDestroyFilterDescriptor(f);
  cudnnDestroyTensorDescriptor(t);
  CHECK(std::strcmp(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM") == 0);
  CHECK(std::strcmp(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED),
                    "CUDNN_STATUS_NOT_SUPPORTED") == 0);
}

TEST_CASE("emu cudnn: a wrong output descriptor is refused, never silently right", "[emu][cudnn]") {
  const Shape s = kShapes[1];
  Conv cv(s);
  DeviceBuffer x(s.x_count() * 4), w(s.w_count() * 4), y(s.y_count() * 4 + 1024);
  cudnnTensorDescriptor_t bad;
  REQUIRE(cudnnCreateTensorDescriptor(&bad) == CUDNN_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  const int dims[][4] = {{s.n, s.k, s.oh() + 1, s.ow()},
                         {s.n, s.k + 1, s.oh(), s.ow()},
                         {s.n + 1, s.k, s.oh(), s.ow()},
                         {s.n, s.k, s.oh(), s.ow() - 1}};
  for (const auto& d : dims) {
    REQUIRE(cudnnSetTensor4dDescriptor(bad, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d[0], d[1], d[2],
                                       d[3]) == CUDNN_STATUS_SUCCESS);
    const auto algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    size_t bytes;
    int got;
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, algo, nullptr, 0,
                                  &zero, bad, y.p) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(cv.h, cv.x, cv.w, cv.conv, bad, algo, &bytes) ==
          CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cv.h, cv.x, cv.w, cv.conv, bad, 8, &got, perf) ==
          CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionBackwardData(cv.h, &one, cv.w, w.p, bad, y.p, cv.conv,
                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, cv.x,
                                       x.p) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionBackwardFilter(cv.h, &one, cv.x, x.p, bad, y.p, cv.conv,
                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero,
                                         cv.w, w.p) == CUDNN_STATUS_BAD_PARAM);
  }
  // The bias gradient must be 1 x K x 1 x 1.
  REQUIRE(cudnnSetTensor4dDescriptor(bad, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.k + 1, 1, 1) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(cudnnConvolutionBackwardBias(cv.h, &one, cv.y, y.p, &zero, bad, w.p) ==
        CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(bad);
}

TEST_CASE("emu cudnn: algorithm lists carry workspaces and determinism", "[emu][cudnn]") {
  const Shape s{2, 8, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  for (cudnnMathType_t math : {CUDNN_FMA_MATH, CUDNN_DEFAULT_MATH}) {
    Conv cv(s, math);
    auto count_ok = [](const auto& list) {
      int ok = 0;
      bool supported_first = true, seen_unsupported = false;
      for (const auto& p : list) {
        if (p.status == CUDNN_STATUS_SUCCESS) {
          ++ok;
          supported_first = supported_first && !seen_unsupported;
        } else {
          seen_unsupported = true;
        }
      }
      CHECK(supported_first);
      return ok;
    };
    bool tensor_op_seen = false;
    const auto fwd = cv.forward_algos();
    CHECK(fwd.size() == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    CHECK(count_ok(fwd) >= 3);
    for (const auto& p : fwd) {
      CHECK(p.determinism == CUDNN_DETERMINISTIC);
      if (p.status != CUDNN_STATUS_SUCCESS) {
        size_t bytes;
        CHECK(cudnnGetConvolutionForwardWorkspaceSize(cv.h, cv.x, cv.w, cv.conv, cv.y, p.algo,
                                                      &bytes) == CUDNN_STATUS_NOT_SUPPORTED);
        continue;
      }
      size_t bytes = 1234;
      REQUIRE(cudnnGetConvolutionForwardWorkspaceSize(cv.h, cv.x, cv.w, cv.conv, cv.y, p.algo,
                                                      &bytes) == CUDNN_STATUS_SUCCESS);
      CHECK(p.memory == bytes);
      if (p.algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM) CHECK(bytes == 0);
      if (p.algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM)  // an im2col buffer of one image
        CHECK(bytes == sizeof(float) * s.c * s.r * s.s * s.oh() * s.ow());
      if (math == CUDNN_FMA_MATH) CHECK(p.mathType == CUDNN_FMA_MATH);
      tensor_op_seen = tensor_op_seen || p.mathType == CUDNN_TENSOR_OP_MATH;
    }
    CHECK(tensor_op_seen == (math == CUDNN_DEFAULT_MATH));

    const auto bd = cv.backward_data_algos();
    CHECK(count_ok(bd) >= 2);
    for (const auto& p : bd) {
      if (p.algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0)
        CHECK(p.determinism == CUDNN_NON_DETERMINISTIC);
      if (p.algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) CHECK(p.determinism == CUDNN_DETERMINISTIC);
      if (p.status != CUDNN_STATUS_SUCCESS) continue;
      size_t bytes = 1234;
      REQUIRE(cudnnGetConvolutionBackwardDataWorkspaceSize(cv.h, cv.w, cv.y, cv.conv, cv.x, p.algo,
                                                           &bytes) == CUDNN_STATUS_SUCCESS);
      CHECK(p.memory == bytes);
    }
    const auto bf = cv.backward_filter_algos();
    CHECK(count_ok(bf) >= 2);
    for (const auto& p : bf) {
      if (p.algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ||
          p.algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3)
        CHECK(p.determinism == CUDNN_NON_DETERMINISTIC);
      if (p.algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1)
        CHECK(p.determinism == CUDNN_DETERMINISTIC);
      if (p.status != CUDNN_STATUS_SUCCESS) continue;
      size_t bytes = 1234;
      REQUIRE(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                  cv.h, cv.x, cv.y, cv.conv, cv.w, p.algo, &bytes) == CUDNN_STATUS_SUCCESS);
      CHECK(p.memory == bytes);
    }
    // Fewer than the maximum requested: exactly that many come back; none is a bad request.
    int got = 0;
    cudnnConvolutionFwdAlgoPerf_t two[2];
    CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cv.h, cv.x, cv.w, cv.conv, cv.y, 2, &got, two) ==
          CUDNN_STATUS_SUCCESS);
    CHECK(got == 2);
    CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cv.h, cv.x, cv.w, cv.conv, cv.y, 0, &got, two) ==
          CUDNN_STATUS_BAD_PARAM);
  }
}

TEST_CASE("emu cudnn: workspaces are enforced, range-checked and overwritten", "[emu][cudnn]") {
  const Shape s = kShapes[0];
  Conv cv(s);
  const auto xs = random_vector(s.x_count(), 21), ws_ = random_vector(s.w_count(), 22);
  DeviceBuffer x(xs), w(ws_), y(s.y_count() * 4);
  const float one = 1, zero = 0;
  const auto gemm = CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
  size_t need = 0;
  REQUIRE(cudnnGetConvolutionForwardWorkspaceSize(cv.h, cv.x, cv.w, cv.conv, cv.y, gemm, &need) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(need > 0);
  DeviceBuffer ws(need);
  CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, gemm, ws.p, need - 1,
                                &zero, cv.y, y.p) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, gemm, nullptr, need,
                                &zero, cv.y, y.p) == CUDNN_STATUS_BAD_PARAM);
  size_t bd = 0, bf = 0;
  REQUIRE(cudnnGetConvolutionBackwardDataWorkspaceSize(cv.h, cv.w, cv.y, cv.conv, cv.x,
                                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                       &bd) == CUDNN_STATUS_SUCCESS);
  REQUIRE(bd > 0);
  CHECK(cudnnConvolutionBackwardData(cv.h, &one, cv.w, w.p, cv.y, y.p, cv.conv,
                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, nullptr, 0, &zero, cv.x,
                                     x.p) == CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnGetConvolutionBackwardFilterWorkspaceSize(cv.h, cv.x, cv.y, cv.conv, cv.w,
                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                         &bf) == CUDNN_STATUS_SUCCESS);
  REQUIRE(bf > 0);
  CHECK(cudnnConvolutionBackwardFilter(cv.h, &one, cv.x, x.p, cv.y, y.p, cv.conv,
                                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws.p, bf - 4, &zero,
                                       cv.w, w.p) == CUDNN_STATUS_BAD_PARAM);
  // An unknown algorithm is a bad parameter; one that does not apply is not supported.
  CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv,
                                cudnnConvolutionFwdAlgo_t(42), ws.p, need, &zero, cv.y,
                                y.p) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv,
                                CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, ws.p, need, &zero, cv.y,
                                y.p) == CUDNN_STATUS_NOT_SUPPORTED);

  // A valid call leaves the workspace overwritten (so sharing it with live data shows).
  DeviceBuffer big(need + 64);
  REQUIRE(cudaMemset(big.p, 0, big.bytes) == cudaSuccess);
  REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, gemm, big.p, big.bytes,
                                  &zero, cv.y, y.p) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto after = big.download();
  CHECK(std::all_of(after.begin(), after.end(), [](float v) { return std::isnan(v); }));
  CHECK(worst_error(y.download(), ref_forward(s, xs, ws_), 1e-6) < 1.0);

  // Faults: a workspace declared larger than its allocation, one that is the output itself.
  REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, gemm, ws.p,
                                  need + 4096, &zero, cv.y, y.p) == CUDNN_STATUS_SUCCESS);
  CHECK(cudaDeviceSynchronize() != cudaSuccess);
  CHECK(nd_emu::last_fault_message().find("cudnnConvolutionForward: workspace") !=
        std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
  DeviceBuffer yw(std::max(need, s.y_count() * 4));
  REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv, gemm, yw.p, need,
                                  &zero, cv.y, yw.p) == CUDNN_STATUS_SUCCESS);
  CHECK(cudaDeviceSynchronize() != cudaSuccess);
  CHECK(nd_emu::last_fault_message().find("share device memory") != std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
  // A host pointer where device memory belongs.
  std::vector<float> host(s.x_count());
  REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, host.data(), cv.w, w.p, cv.conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, cv.y,
                                  y.p) == CUDNN_STATUS_SUCCESS);
  CHECK(cudaDeviceSynchronize() != cudaSuccess);
  CHECK(nd_emu::last_fault_message().find("cudnnConvolutionForward: x") != std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
}

TEST_CASE("emu cudnn: work runs on the handle's stream, in order, when synchronised",
          "[emu][cudnn]") {
  const Shape s = kShapes[3];
  Conv cv(s);
  cudaStream_t st;
  REQUIRE(cudaStreamCreate(&st) == cudaSuccess);
  REQUIRE(cudnnSetStream(cv.h, st) == CUDNN_STATUS_SUCCESS);
  cudaStream_t back = nullptr;
  CHECK(cudnnGetStream(cv.h, &back) == CUDNN_STATUS_SUCCESS);
  CHECK(back == st);
  const auto xs = random_vector(s.x_count(), 31), ws_ = random_vector(s.w_count(), 32);
  const auto bs = random_vector(s.k, 33);
  DeviceBuffer x(xs), w(ws_), b(bs), y(s.y_count() * 4);
  const float one = 1, zero = 0;
  const auto before = nd_emu::counters().library_calls;
  // Forward, then the bias added in place: the second reads what the first wrote.
  REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, cv.y,
                                  y.p) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnAddTensor(cv.h, &one, cv.bias, b.p, &one, cv.y, y.p) == CUDNN_STATUS_SUCCESS);
  CHECK(nd_emu::counters().library_calls - before == 2);
  // Descriptors may change once the calls are queued: the queued work keeps what it was given.
  REQUIRE(cudnnSetConvolutionGroupCount(cv.conv, 1) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudaStreamSynchronize(st) == cudaSuccess);
  auto want = ref_forward(s, xs, ws_);
  const size_t plane = size_t(s.oh()) * s.ow();
  for (size_t i = 0; i < want.size(); ++i) want[i] += bs[(i / plane) % s.k];
  CHECK(worst_error(y.download(), want, 1e-6) < 1.0);
  REQUIRE(cudaStreamDestroy(st) == cudaSuccess);
}

TEST_CASE("emu cudnn: add tensor broadcasts a 1xCx1x1 tensor and adds same-shape ones",
          "[emu][cudnn]") {
  cudnnHandle_t h;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t a, c;
  REQUIRE(cudnnCreateTensorDescriptor(&a) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateTensorDescriptor(&c) == CUDNN_STATUS_SUCCESS);
  const int N = 2, C = 3, H = 4, W = 5;
  REQUIRE(cudnnSetTensor4dDescriptor(c, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W) ==
          CUDNN_STATUS_SUCCESS);
  const auto cv = random_vector(N * C * H * W, 41), bias = random_vector(C, 42);
  DeviceBuffer dc(cv), db(bias);
  const float alpha = 2.0f, beta = 0.5f;
  REQUIRE(cudnnSetTensor4dDescriptor(a, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, C, 1, 1) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnAddTensor(h, &alpha, a, db.p, &beta, c, dc.p) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<double> want(cv.size());
  for (size_t i = 0; i < cv.size(); ++i) want[i] = 2.0 * bias[(i / (H * W)) % C] + 0.5 * cv[i];
  CHECK(worst_error(dc.download(), want, 1e-6) < 1.0);

  // Same shape, beta = 0: C's old contents (NaN) are not read.
  REQUIRE(cudnnSetTensor4dDescriptor(a, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W) ==
          CUDNN_STATUS_SUCCESS);
  const auto av = random_vector(N * C * H * W, 43);
  DeviceBuffer da(av);
  dc.upload(nan_vector(av.size()));
  const float zero = 0.0f;
  REQUIRE(cudnnAddTensor(h, &alpha, a, da.p, &zero, c, dc.p) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (size_t i = 0; i < av.size(); ++i) want[i] = 2.0 * av[i];
  CHECK(worst_error(dc.download(), want, 1e-6) < 1.0);

  // A dimension that is neither C's nor 1.
  REQUIRE(cudnnSetTensor4dDescriptor(a, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 1, 1) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(cudnnAddTensor(h, &alpha, a, db.p, &beta, c, dc.p) == CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(a);
  cudnnDestroyTensorDescriptor(c);
  cudnnDestroy(h);
}

TEST_CASE("emu cudnn: NHWC layouts and true convolution mode", "[emu][cudnn]") {
  const Shape s = kShapes[1];
  Conv cv(s);
  const auto xs = random_vector(s.x_count(), 51), ws_ = random_vector(s.w_count(), 52);
  // The same x stored NHWC.
  std::vector<float> x_nhwc(xs.size());
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int i = 0; i < s.h * s.w; ++i)
        x_nhwc[(size_t(n) * s.h * s.w + i) * s.c + c] = xs[(size_t(n) * s.c + c) * s.h * s.w + i];
  cudnnTensorDescriptor_t xn;
  REQUIRE(cudnnCreateTensorDescriptor(&xn) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetTensor4dDescriptor(xn, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, s.n, s.c, s.h, s.w) ==
          CUDNN_STATUS_SUCCESS);
  DeviceBuffer x(x_nhwc), w(ws_), y(s.y_count() * 4);
  const float one = 1, zero = 0;
  REQUIRE(cudnnConvolutionForward(cv.h, &one, xn, x.p, cv.w, w.p, cv.conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, cv.y,
                                  y.p) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(worst_error(y.download(), ref_forward(s, xs, ws_), 1e-6) < 1.0);
  cudnnDestroyTensorDescriptor(xn);

  // CUDNN_CONVOLUTION is cross-correlation with each filter plane rotated by 180 degrees.
  std::vector<float> flipped(ws_.size());
  const size_t rs = size_t(s.r) * s.s;
  for (size_t i = 0; i < ws_.size(); ++i) flipped[i] = ws_[(i / rs) * rs + (rs - 1 - i % rs)];
  REQUIRE(cudnnSetConvolution2dDescriptor(cv.conv, s.pad_h, s.pad_w, s.stride_h, s.stride_w,
                                          s.dil_h, s.dil_w, CUDNN_CONVOLUTION,
                                          CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
  DeviceBuffer xc(xs);
  CHECK(worst_error(cv.forward(xc, w, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM),
                    ref_forward(s, xs, flipped), 1e-6) < 1.0);
  const auto dy = random_vector(s.y_count(), 53);
  DeviceBuffer ddy(dy), dw(s.w_count() * 4);
  const auto got = cv.backward_filter(xc, ddy, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
  const auto corr = ref_backward_filter(s, xs, dy);
  std::vector<double> want(corr.size());
  for (size_t i = 0; i < corr.size(); ++i) want[i] = corr[(i / rs) * rs + (rs - 1 - i % rs)];
  CHECK(worst_error(got, want, 1e-6) < 1.0);
}

TEST_CASE("emu cudnn: tensor-op math rounds the operands to TF32", "[emu][cudnn]") {
  const Shape s{2, 16, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  const auto xs = random_vector(s.x_count(), 61), ws_ = random_vector(s.w_count(), 62);
  std::vector<float> xt(xs), wt(ws_);
  for (float& v : xt) v = tf32(v);
  for (float& v : wt) v = tf32(v);
  const auto exact = ref_forward(s, xs, ws_), rounded = ref_forward(s, xt, wt);
  DeviceBuffer x(xs), w(ws_), y(s.y_count() * 4);
  for (cudnnMathType_t math : {CUDNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION}) {
    Conv cv(s, math);
    const auto got = cv.forward(x, w, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    CHECK(worst_error(got, rounded, 1e-6) < 1.0);
    // Against FP32: off by about 2^-11 relative per product, a few 1e-4 of the sums' scale.
    double max_diff = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(got[i] - exact[i]));
      scale = std::max(scale, std::fabs(exact[i]));
    }
    CHECK(max_diff > 1e-5 * scale);
    CHECK(max_diff < 1e-2 * scale);
  }
  for (cudnnMathType_t math : {CUDNN_DEFAULT_MATH, CUDNN_FMA_MATH}) {
    Conv cv(s, math);
    CHECK(worst_error(cv.forward(x, w, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM), exact,
                      1e-6) < 1.0);
  }
  // The backward passes round too.
  Conv cv(s, CUDNN_TENSOR_OP_MATH);
  const auto dy = random_vector(s.y_count(), 63);
  std::vector<float> dyt(dy);
  for (float& v : dyt) v = tf32(v);
  DeviceBuffer ddy(dy), dx(s.x_count() * 4), dw(s.w_count() * 4);
  CHECK(worst_error(cv.backward_data(w, ddy, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1),
                    ref_backward_data(s, wt, dyt), 1e-6) < 1.0);
  CHECK(worst_error(cv.backward_filter(x, ddy, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1),
                    ref_backward_filter(s, xt, dyt), 1e-6) < 1.0);
}

// Hidden ([.]): the speed of one ResNet-18 layer's forward and backward on the emulator.
TEST_CASE("emu cudnn: ResNet-18 3x3 conv timing", "[.][emu][cudnn][timing]") {
  const Shape s{4, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  Conv cv(s);
  DeviceBuffer x(random_vector(s.x_count(), 71)), w(random_vector(s.w_count(), 72));
  DeviceBuffer dy(random_vector(s.y_count(), 73)), y(s.y_count() * 4), dx(s.x_count() * 4),
      dw(s.w_count() * 4);
  const float one = 1, zero = 0;
  auto run = [&] {
    REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, x.p, cv.w, w.p, cv.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                    cv.y, y.p) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnConvolutionBackwardData(cv.h, &one, cv.w, w.p, cv.y, dy.p, cv.conv,
                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, cv.x,
                                         dx.p) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnConvolutionBackwardFilter(cv.h, &one, cv.x, x.p, cv.y, dy.p, cv.conv,
                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero,
                                           cv.w, dw.p) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  };
  run();
  const int reps = 3;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) run();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      reps;
  std::printf(
      "ResNet-18 conv 4x64x32x32, 3x3, forward + backward data + backward filter: %.1f ms\n", ms);
}
