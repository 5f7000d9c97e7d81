// Edge rules of the CPU reference kernels that the CUDA kernels must share: GEMM with beta = 0
// overwrites the output (garbage or NaN in it does not survive, as BLAS specifies), and argmax
// takes the first maximum with NaN above every number.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops.h"
#include "kernels/matmul.h"
#include "kernels/reduce.h"
#include "test/catch.h"

using namespace nd;

namespace {
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();
}  // namespace

TEST_CASE("gemm_cpu with beta = 0 overwrites NaN in the output", "[kernels][matmul]") {
  for (int64_t k : {0, 3}) {
    SECTION("k = " + std::to_string(k)) {
      kernels::GemmShape g;
      g.m = 2, g.n = 3, g.k = k, g.lda = std::max<int64_t>(k, 1), g.ldb = 3, g.ldc = 3;
      std::vector<float> a(size_t(2 * std::max<int64_t>(k, 1)), 1.0f);
      std::vector<float> b(size_t(std::max<int64_t>(k, 1) * 3), 2.0f);
      std::vector<float> c(6, kNaN);
      kernels::gemm_cpu<float>(g, 1.0, a.data(), b.data(), 0.0, c.data());
      for (float v : c) REQUIRE(v == 2.0f * float(k));
      // beta = 0.5 scales what is there; with k = 0 nothing is added.
      std::vector<float> d(6, 4.0f);
      kernels::gemm_cpu<float>(g, 1.0, a.data(), b.data(), 0.5, d.data());
      for (float v : d) REQUIRE(v == 2.0f + 2.0f * float(k));
    }
  }
}

TEST_CASE("argmax takes the first maximum, and the first NaN above every number",
          "[kernels][reduce]") {
  struct Case {
    std::vector<float> row;
    int64_t want;
  };
  const Case cases[] = {
      {{1, 3, 3, 2}, 1},           // ties: the first
      {{-kInf, -kInf, -kInf}, 0},  // all -inf
      {{kNaN, 5, 7}, 0},           // NaN first
      {{5, kNaN, 7, kNaN}, 1},     // NaN in the middle beats the larger 7 after it
      {{5, 7, kInf, kNaN}, 3},     // NaN above +inf
      {{-1, kInf, 2, kInf}, 1},    // +inf ties
      {{0.5f}, 0},                 // one column
  };
  for (const Case& c : cases) {
    std::vector<int64_t> idx(1, -1);
    kernels::argmax_rows_cpu<float>(c.row.data(), idx.data(), 1, int64_t(c.row.size()));
    INFO("row of " << c.row.size() << ", want " << c.want);
    REQUIRE(idx[0] == c.want);
    std::vector<double> row_d(c.row.begin(), c.row.end());
    kernels::argmax_rows_cpu<double>(row_d.data(), idx.data(), 1, int64_t(row_d.size()));
    REQUIRE(idx[0] == c.want);
  }
  // Through ops:: on a (rows, cols) tensor.
  std::vector<float> m = {1, 2, 0, kNaN, 1, kNaN, 4, 4, 4};
  Tensor t = Tensor::from_vector(m, {3, 3});
  REQUIRE(ops::argmax(t).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
}
