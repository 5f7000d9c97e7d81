// Autograd graph behaviour: accumulation, no-grad scopes, detach, leaves, errors.
#include "engine/ops.h"
#include "test/catch.h"

using namespace nd;

TEST_CASE("gradients of a value used twice add up", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({2.0}, {1});
  x.set_requires_grad(true);
  Tensor y = ops::add(ops::mul(x, x), ops::affine(x, 3.0, 0.0));  // x^2 + 3x
  ops::sum(y).backward();
  CHECK(x.grad().item() == 7.0);  // 2x + 3
}

TEST_CASE("leaf gradients accumulate across backward calls until cleared", "[autograd]") {
  Tensor w = Tensor::from_vector<double>({1.0, -1.0}, {2});
  w.set_requires_grad(true);
  for (int i = 0; i < 2; ++i) ops::sum(ops::affine(w, 2.0, 0.0)).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{4.0, 4.0});
  w.set_grad(Tensor());
  ops::sum(w).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
}

TEST_CASE("no-grad scopes and detach record nothing", "[autograd]") {
  Tensor w = Tensor::ones({3});
  w.set_requires_grad(true);
  {
    NoGradGuard guard;
    CHECK(!grad_enabled());
    CHECK(!ops::sigmoid(w).requires_grad());
  }
  CHECK(grad_enabled());
  CHECK(ops::sigmoid(w).requires_grad());
  CHECK(!ops::sigmoid(w.detach()).requires_grad());
  CHECK(!ops::sigmoid(Tensor::ones({3})).requires_grad());
}

TEST_CASE("a second backward through freed buffers is an error", "[autograd]") {
  Tensor w = Tensor::ones({3});
  w.set_requires_grad(true);
  Tensor loss = ops::sum(ops::sigmoid(w));
  loss.backward();
  CHECK_THROWS_AS(loss.backward(), Error);
}

TEST_CASE("backward needs a scalar or an explicit seed", "[autograd]") {
  Tensor w = Tensor::ones({3});
  w.set_requires_grad(true);
  Tensor y = ops::affine(w, 2.0, 0.0);
  CHECK_THROWS_AS(y.backward(), Error);
  y.backward(Tensor::from_vector<float>({1, 2, 3}, {3}));
  CHECK(w.grad().to_vector<float>() == std::vector<float>{2, 4, 6});
}

TEST_CASE("integer tensors cannot require grad", "[autograd]") {
  Tensor i = Tensor::zeros({2}, DType::I64);
  CHECK_THROWS_AS(i.set_requires_grad(true), Error);
}
