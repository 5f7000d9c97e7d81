// Cross-rank batch statistics (see sync_statistics.h).
#include "layers/sync_statistics.h"

#include "engine/comm.h"
#include "engine/ops.h"

namespace nd {

Moments all_reduce_moments(const Moments& local, bool diagonal, bool centred) {
  const Tensor& mean = local.mean;
  Moments global;
  // The count travels on the host (exact, and no wait for the device); the sums on the device.
  global.count = comm::all_reduce_sum(local.count);
  ND_CHECK(global.count > 0, "batch statistics over no rows on any rank");
  global.mean = ops::affine(comm::all_reduce_sum(ops::affine(mean, local.count, 0.0)),
                            1.0 / global.count, 0.0);
  Tensor m2 = local.m2;
  if (centred && local.count > 0) {
    // This rank's rows about the global mean: m2 + count (mean_r - mean)(mean_r - mean)^T.
    Tensor d = ops::sub(mean, global.mean);
    Tensor spread;
    if (diagonal) {
      spread = ops::square(d);
    } else {
      const int64_t n = mean.shape().back();
      Tensor col = d.reshape({-1, n, 1});
      spread = ops::matmul(col, col.transpose(1, 2)).reshape(m2.shape());
    }
    m2 = ops::add(m2, ops::affine(spread, local.count, 0.0));
  }
  global.m2 = comm::all_reduce_sum(m2);
  return global;
}

std::pair<Tensor, Tensor> synchronise_covariance(const Tensor& mean, const Tensor& cov,
                                                 double count, double eps, bool centred) {
  Moments local{mean, ops::affine(cov, count, 0.0), count};
  Moments global = all_reduce_moments(local, /*diagonal=*/false, centred);
  const int64_t n = cov.shape().back();
  Tensor eye = ops::affine(ops::eye(n, cov.dtype(), cov.device()), eps, 0.0);
  return {global.mean, ops::add(ops::affine(global.m2, 1.0 / global.count, 0.0), eye)};
}

}  // namespace nd
