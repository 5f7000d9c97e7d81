// Tests of the caching CUDA allocator (design principle 8): steady-state
// training of a small MLP (Linear 784->128, sigmoid, Linear 128->10, cross entropy, SGD) makes no
// new cudaMalloc after its first step; bytes in use return to their starting value once every
// tensor of a scope is gone; an absurd request throws nd::OutOfMemoryError naming its size and
// leaves the device usable. (Copies between devices: test_transfer_cuda.cpp.)
#include <cmath>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/activation.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "test/catch.h"
#include "test/compare.h"

namespace {

using nd::Device;
using nd::DType;
using nd::Generator;
using nd::Tensor;

const Device kCuda = Device::cuda(0);

std::shared_ptr<nd::Sequential> make_mlp(Generator& gen) {
  auto net = std::make_shared<nd::Sequential>();
  net->push_back(std::make_shared<nd::Linear>(784, 128, true, gen));
  net->push_back(nd::make_sigmoid());
  net->push_back(std::make_shared<nd::Linear>(128, 10, true, gen));
  return net;
}

TEST_CASE("cuda steady-state training makes no new device allocations", "[cuda][allocator]") {
  // Start from an empty cache so blocks left by earlier tests do not shape the first step.
  nd::empty_cache(kCuda);
  Generator gen(42);
  auto net = make_mlp(gen);
  net->to(kCuda);
  nd::Sgd opt(net->parameters(), 0.1, 0.9, 5e-4);
  const int64_t batch = 64;
  const Tensor x = nd::uniform_tensor({batch, 784}, 0.0, 1.0, gen).to(kCuda);
  std::vector<int64_t> l(static_cast<size_t>(batch));
  for (auto& e : l) e = int64_t(gen.below(10));
  const Tensor labels = Tensor::from_vector(l, {batch}).to(kCuda);

  auto step = [&] {
    opt.zero_grad();
    Tensor logits = (*net)(x);
    Tensor loss = nd::ops::cross_entropy(logits, labels);
    loss.backward();
    opt.step();
    return loss.item();  // a real trainer reads the loss back; also synchronises
  };

  const double first_loss = step();  // warm-up: fills the cache
  REQUIRE(std::isfinite(first_loss));
  const nd::AllocatorStats warm = nd::allocator_stats(kCuda);
  INFO("after the warm-up step: device_mallocs " << warm.device_mallocs << ", bytes_reserved "
                                                 << warm.bytes_reserved << ", cache_hits "
                                                 << warm.cache_hits);
  std::ostringstream per_step;
  double last_loss = first_loss;
  for (int i = 0; i < 20; ++i) {
    last_loss = step();
    per_step << nd::allocator_stats(kCuda).device_mallocs << " ";
  }
  const nd::AllocatorStats after = nd::allocator_stats(kCuda);
  INFO("device_mallocs after each of the 20 steps: " << per_step.str());
  INFO("losses: first " << first_loss << ", last " << last_loss);
  REQUIRE(std::isfinite(last_loss));
  REQUIRE(last_loss < first_loss);  // the steps did train
  REQUIRE(after.device_mallocs == warm.device_mallocs);
  REQUIRE(after.bytes_reserved == warm.bytes_reserved);
  REQUIRE(after.cache_hits > warm.cache_hits);
}

TEST_CASE("cuda bytes in use return to their start when a scope's tensors are gone",
          "[cuda][allocator]") {
  const int64_t start = nd::allocator_stats(kCuda).bytes_in_use;
  {
    Generator gen(7);
    Tensor x = nd::uniform_tensor({8, 3, 17, 19}, -1.0, 1.0, gen).to(kCuda);
    Tensor w = nd::uniform_tensor({16, 3, 3, 3}, -0.2, 0.2, gen).to(kCuda);
    Tensor b = nd::uniform_tensor({16}, -0.2, 0.2, gen).to(kCuda);
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    nd::ops::Conv2dParams p;
    p.padding = 1;
    Tensor y = nd::ops::conv2d(x, w, b, p);  // uses cuDNN workspace scratch too
    Tensor z = nd::ops::sum(nd::ops::mul(nd::ops::relu(y), y), {0, 2, 3});
    Tensor loss = nd::ops::sum(nd::ops::square(z));
    loss.backward();
    Tensor big = Tensor::empty({(1 << 20) + 7}, DType::F32, kCuda);
    big.fill_(1.0);
    Tensor cast = big.to(DType::F64);
    Tensor copy = Tensor::ones({33, 65}, DType::F32, kCuda).transpose(0, 1).contiguous();
    const int64_t during = nd::allocator_stats(kCuda).bytes_in_use;
    INFO("bytes in use: start " << start << ", during " << during);
    REQUIRE(during > start);
    REQUIRE(std::isfinite(loss.item()));
  }
  const int64_t end = nd::allocator_stats(kCuda).bytes_in_use;
  INFO("bytes in use: start " << start << ", end " << end);
  REQUIRE(end == start);
}

TEST_CASE("cuda an absurd allocation throws OutOfMemoryError naming the size",
          "[cuda][allocator]") {
  const int64_t before = nd::allocator_stats(kCuda).bytes_in_use;
  const int64_t elements = int64_t(1) << 40;  // float32: 4 TiB, more than any GPU has
  const std::string bytes = std::to_string(elements * 4);
  bool thrown = false;
  std::string message;
  try {
    Tensor t = Tensor::empty({elements}, DType::F32, kCuda);
  } catch (const nd::OutOfMemoryError& e) {
    thrown = true;
    message = e.what();
  }
  INFO("message: " << message);
  REQUIRE(thrown);
  CHECK(message.find(bytes) != std::string::npos);
  CHECK(nd::allocator_stats(kCuda).bytes_in_use == before);
  // The device is still usable afterwards.
  Tensor a = Tensor::full({1000}, 2.0, DType::F32, kCuda);
  Tensor s = nd::ops::sum(nd::ops::mul(a, a));
  REQUIRE(s.item() == 4000.0);
}

}  // namespace
