// CPU reference of the reduction family (see reduce.h); sums accumulate in double.
#include <vector>

#include <cmath>

#include "kernels/reduce.h"

namespace nd::kernels {

template <typename T>
void sum_axis_cpu(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  std::vector<double> acc(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    const T* xo = x + o * n * inner;
    for (int64_t j = 0; j < n; ++j) {
      const T* row = xo + j * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] += static_cast<double>(row[i]);
    }
    for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = static_cast<T>(acc[i]);
  }
}

template <typename T>
void argmax_rows_cpu(const T* x, int64_t* idx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols && !std::isnan(row[best]); ++c)
      if (std::isnan(row[c]) || row[c] > row[best]) best = c;
    idx[r] = best;
  }
}

template void sum_axis_cpu<float>(const float*, float*, int64_t, int64_t, int64_t);
template void sum_axis_cpu<double>(const double*, double*, int64_t, int64_t, int64_t);
template void argmax_rows_cpu<float>(const float*, int64_t*, int64_t, int64_t);
template void argmax_rows_cpu<double>(const double*, int64_t*, int64_t, int64_t);

}  // namespace nd::kernels
