// ops:: concatenation and the identity matrix.
#include "engine/ops.h"

namespace nd::ops {

Tensor cat(const std::vector<Tensor>& parts, int64_t dim) {
  ND_CHECK(!parts.empty(), "cat of no tensors");
  const Tensor& first = parts[0];
  if (dim < 0) dim += first.dim();
  ND_CHECK(dim >= 0 && dim < first.dim(), "cat: dimension out of range");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (const Tensor& p : parts) {
    ND_CHECK(p.dim() == first.dim() && p.device() == first.device() && p.dtype() == first.dtype(),
             "cat: parts differ in rank, device or dtype");
    for (int64_t i = 0; i < first.dim(); ++i)
      ND_CHECK(i == dim || p.shape()[i] == first.shape()[i], "cat: shapes ",
               shape_str(first.shape()), " and ", shape_str(p.shape()), " differ outside dim ",
               dim);
    out_shape[dim] += p.shape()[dim];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> offsets;
  {
    NoGradGuard no_grad;
    int64_t at = 0;
    for (const Tensor& p : parts) {
      offsets.push_back(at);
      out.slice(dim, at, at + p.shape()[dim]).copy_(p);
      at += p.shape()[dim];
    }
    offsets.push_back(at);
  }
  return record(out, parts, "cat", [dim, offsets](const Tensor& g) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      grads.push_back(g.slice(dim, offsets[i], offsets[i + 1]));
    return grads;
  });
}

Tensor eye(int64_t n, DType dtype, Device device) {
  std::vector<double> v(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[size_t(i * n + i)] = 1.0;
  return Tensor::from_vector(v, {n, n}).to(dtype).to(device);
}

}  // namespace nd::ops
