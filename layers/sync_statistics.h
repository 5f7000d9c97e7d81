// Batch statistics of the whole data-parallel batch (--sync-stats on): each rank's moments of its
// own rows are combined across ranks, so every rank normalises or whitens with the statistics a
// single process would compute from the global batch, and running buffers stay identical on all
// ranks without broadcasting them. Differentiable: the gradient reaches every rank's rows through
// the all-reduces (engine/comm.h).
#pragma once
#include "engine/tensor.h"

namespace nd {

// One rank's moments: mean (..., n), the centred sum of squares m2 = sum over its rows of
// (x - mean)(x - mean)^T (..., n, n), or only its diagonal (..., n) when `diagonal`, over
// `count` rows. `centred` false: m2 is the raw sum x x^T (ChannelDeconv's --ref-compat).
struct Moments {
  Tensor mean, m2;
  double count = 0;
};

// The moments of every rank's rows together, on every rank. Chan et al.'s parallel combination
// in two all-reduces (sums with counts; then the centred m2 plus count (mean_r - mean)^2 about
// the global mean), so it stays as accurate as the single-process two-pass formula.
Moments all_reduce_moments(const Moments& local, bool diagonal, bool centred = true);

// For a covariance this rank formed without eps: (mean (g, n), cov = m2 / count (g, n, n)) of its
// `count` rows -> (global mean, global cov + eps I). Layers call it only when
// comm::sync_statistics(); otherwise they keep their single-process formula untouched.
std::pair<Tensor, Tensor> synchronise_covariance(const Tensor& mean, const Tensor& cov,
                                                 double count, double eps, bool centred = true);

}  // namespace nd
