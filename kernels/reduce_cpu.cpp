// CPU reference of the reduction family (see reduce.h); sums accumulate in double, each output
// on one thread (cpu_parallel.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/reduce.h"

namespace nd::kernels {

template <typename T>
void sum_axis_cpu(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  if (inner == 1) {
    // Contiguous rows: eight interleaved partial sums (vectorisable, no chain of dependent adds),
    // combined in a fixed order.
    parallel_ranges(outer, n, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const T* row = x + o * n;
        double part[8] = {};
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
          for (int k = 0; k < 8; ++k) part[k] += static_cast<double>(row[j + k]);
        double acc = 0;
        for (double p : part) acc += p;
        for (; j < n; ++j) acc += static_cast<double>(row[j]);
        y[o] = static_cast<T>(acc);
      }
    });
    return;
  }
  // Tasks of (outer index, chunk of the inner positions), each summing its columns over n.
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  parallel_ranges(outer * chunks, n * std::min(inner, kChunk), [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(std::min(inner, kChunk)));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o = task / chunks, i0 = (task % chunks) * kChunk;
      const int64_t width = std::min(kChunk, inner - i0);
      std::fill(acc.begin(), acc.begin() + width, 0.0);
      const T* xo = x + o * n * inner + i0;
      for (int64_t j = 0; j < n; ++j) {
        const T* row = xo + j * inner;
        for (int64_t i = 0; i < width; ++i) acc[size_t(i)] += static_cast<double>(row[i]);
      }
      for (int64_t i = 0; i < width; ++i) y[o * inner + i0 + i] = static_cast<T>(acc[size_t(i)]);
    }
  });
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
