// Reduction family. A tensor is viewed as (outer, n, inner) and reduced over the middle axis;
// engine/ maps any set of axes onto repeated calls. argmax works on rows of a (rows, cols) matrix.
// The CPU reference accumulates in double.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

// y[o, i] = sum_j x[o, j, i]   x: (outer, n, inner), y: (outer, inner)
template <typename T>
void sum_axis_cpu(const T* x, T* y, int64_t outer, int64_t n, int64_t inner);
// idx[r] = the first column holding the maximum of row r, NaN counting as larger than every
// number (a row with NaN gives its first NaN, as NumPy and PyTorch do)   x: (rows, cols)
template <typename T>
void argmax_rows_cpu(const T* x, int64_t* idx, int64_t rows, int64_t cols);

void sum_axis_cuda(const float* x, float* y, int64_t outer, int64_t n, int64_t inner,
                   cudaStream_t s);
void argmax_rows_cuda(const float* x, int64_t* idx, int64_t rows, int64_t cols, cudaStream_t s);

}  // namespace nd::kernels
