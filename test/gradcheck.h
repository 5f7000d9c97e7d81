// Central-difference gradient check in double precision (design principle 4): the loss is
// sum(r * f(inputs)) for a fixed random r; every input element is perturbed by +-h and the
// numerical derivative is compared with what autograd's backward produced.
#pragma once
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"
#include "test/catch.h"

namespace nd::test {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Fn& f, const std::vector<Tensor>& inputs, const Tensor& r) {
  NoGradGuard no_grad;
  Tensor out = f(inputs);
  return ops::sum(ops::mul(out, r)).item();
}

// inputs: float64 CPU leaves; those with requires_grad are checked.
inline void gradcheck(const std::string& what, const Fn& f, std::vector<Tensor> inputs,
                      double h = 1e-6, double rtol = 1e-6, double atol = 1e-8,
                      uint64_t seed = 1234) {
  INFO(what);
  Tensor probe;
  {
    NoGradGuard no_grad;
    probe = f(inputs);
  }
  Generator gen(seed);
  Tensor r = normal_tensor(probe.shape(), 0.0, 1.0, gen, DType::F64);
  for (Tensor& t : inputs)
    if (t.requires_grad()) t.set_grad(Tensor());
  Tensor out = f(inputs);
  REQUIRE(out.requires_grad());
  ops::sum(ops::mul(out, r)).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    REQUIRE(x.grad().defined());
    const std::vector<double> analytic = x.grad().to_vector<double>();
    double* data = x.data<double>();
    REQUIRE(x.is_contiguous());
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double saved = data[j];
      data[j] = saved + h;
      const double up = weighted_sum(f, inputs, r);
      data[j] = saved - h;
      const double down = weighted_sum(f, inputs, r);
      data[j] = saved;
      const double numeric = (up - down) / (2 * h);
      const double err = std::abs(numeric - analytic[j]);
      if (err > atol + rtol * std::abs(numeric) + 1e-7 * (std::abs(up) + std::abs(down))) {
        std::ostringstream os;
        os << what << ": input " << i << " element " << j << ": analytic " << analytic[j]
           << " numeric " << numeric << " (error " << err << ")";
        FAIL(os.str());
      }
    }
  }
  SUCCEED();
}

inline Tensor leaf(const Shape& shape, Generator& gen, double lo = -1, double hi = 1) {
  Tensor t = uniform_tensor(shape, lo, hi, gen, DType::F64);
  t.set_requires_grad(true);
  return t;
}

}  // namespace nd::test
