// Forward values of the CPU reference against independent direct formulas (naive loops), so
// the im2col/GEMM/BLAS paths are checked, not just self-consistent.
#include <cmath>

#include "engine/ops.h"
#include "engine/random.h"
#include "test/catch.h"

using namespace nd;

TEST_CASE("conv2d equals a direct convolution", "[reference]") {
  Generator gen(11);
  struct Case {
    int64_t n, c, h, w, o, k, stride, pad, dil, groups;
  };
  for (const Case& c : {Case{2, 4, 7, 6, 6, 3, 2, 1, 1, 2}, Case{1, 3, 9, 9, 3, 5, 1, 2, 2, 3},
                        Case{3, 2, 5, 5, 4, 1, 1, 0, 1, 1}}) {
    Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0, 1, gen, DType::F64);
    Tensor w = normal_tensor({c.o, c.c / c.groups, c.k, c.k}, 0, 1, gen, DType::F64);
    Tensor b = normal_tensor({c.o}, 0, 1, gen, DType::F64);
    ops::Conv2dParams p;
    p.stride = c.stride, p.padding = c.pad, p.dilation = c.dil, p.groups = c.groups;
    Tensor y = ops::conv2d(x, w, b, p);
    const int64_t oh = y.size(2), ow = y.size(3);
    const double *X = x.data<double>(), *W = w.data<double>(), *B = b.data<double>();
    const auto Y = y.to_vector<double>();
    const int64_t cg = c.c / c.groups, og = c.o / c.groups;
    double max_err = 0;
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t o = 0; o < c.o; ++o)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            double acc = B[o];
            const int64_t g = o / og;
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t ky = 0; ky < c.k; ++ky)
                for (int64_t kx = 0; kx < c.k; ++kx) {
                  const int64_t iy = i * c.stride - c.pad + ky * c.dil;
                  const int64_t ix = j * c.stride - c.pad + kx * c.dil;
                  if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                  acc += X[((n * c.c + g * cg + ci) * c.h + iy) * c.w + ix] *
                         W[((o * cg + ci) * c.k + ky) * c.k + kx];
                }
            max_err = std::max(max_err, std::abs(acc - Y[((n * c.o + o) * oh + i) * ow + j]));
          }
    CHECK(max_err < 1e-12);
  }
}

TEST_CASE("matmul and linear equal naive products", "[reference]") {
  Generator gen(12);
  Tensor a = normal_tensor({2, 5, 3}, 0, 1, gen, DType::F64);
  Tensor b = normal_tensor({2, 3, 4}, 0, 1, gen, DType::F64);
  const auto c = ops::matmul(a, b).to_vector<double>();
  const double *A = a.data<double>(), *B = b.data<double>();
  for (int64_t z = 0; z < 2; ++z)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < 3; ++k) acc += A[(z * 5 + i) * 3 + k] * B[(z * 3 + k) * 4 + j];
        CHECK(std::abs(acc - c[(z * 5 + i) * 4 + j]) < 1e-12);
      }
  Tensor x = normal_tensor({3, 4}, 0, 1, gen, DType::F64);
  Tensor w = normal_tensor({2, 4}, 0, 1, gen, DType::F64);
  Tensor bias = Tensor::from_vector<double>({10, 20}, {2});
  const auto y = ops::linear(x, w, bias).to_vector<double>();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t o = 0; o < 2; ++o) {
      double acc = o == 0 ? 10 : 20;
      for (int64_t k = 0; k < 4; ++k)
        acc += x.data<double>()[i * 4 + k] * w.data<double>()[o * 4 + k];
      CHECK(std::abs(acc - y[i * 2 + o]) < 1e-12);
    }
}

TEST_CASE("losses match their formulas", "[reference]") {
  Tensor z = Tensor::from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor labels = Tensor::from_vector<int64_t>({2, 0}, {2});
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double ce = ((lse0 - 3) + std::log(3.0)) / 2;
  CHECK(std::abs(ops::cross_entropy(z, labels).item() - ce) < 1e-14);
  // L2: 0.5 * ((1, 2, 2)^2 + (1, 0, 0)^2) / 2
  const double l2 = 0.5 * ((1 + 4 + 4) + 1) / 2;
  CHECK(std::abs(ops::l2_loss(z, labels).item() - l2) < 1e-14);
  CHECK(ops::count_correct(z, labels) == 2);  // ties resolve to the first column
}
