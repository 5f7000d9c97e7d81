// Tests of the caching CUDA allocator and of host/device copies (design principle 8): steady-state
// training of a small MLP (Linear 784->128, sigmoid, Linear 128->10, cross entropy, SGD) makes no
// new cudaMalloc after its first step; bytes in use return to their starting value once every
// tensor of a scope is gone; an absurd request throws nd::OutOfMemoryError naming its size and
// leaves the device usable; and values of every element type survive cpu -> cuda -> cpu exactly.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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

// cpu -> cuda -> cpu of `values`; the bytes must come back unchanged.
template <typename T>
void require_round_trip(const std::vector<T>& values, const std::string& what) {
  INFO(what << ", " << values.size() << " values");
  const Tensor host = Tensor::from_vector(values, {int64_t(values.size())});
  const Tensor dev = host.to(kCuda);
  REQUIRE(dev.device() == kCuda);
  REQUIRE(dev.dtype() == host.dtype());
  const Tensor back = dev.to(Device::cpu());
  REQUIRE(back.device().is_cpu());
  const std::vector<T> got = back.to_vector<T>();
  REQUIRE(got.size() == values.size());
  // Bitwise, so NaN payloads, -0 and denormals count too.
  size_t first_bad = values.size();
  for (size_t i = 0; i < values.size() && first_bad == values.size(); ++i)
    if (std::memcmp(&got[i], &values[i], sizeof(T)) != 0) first_bad = i;
  if (first_bad != values.size())
    FAIL(what << ": element " << first_bad << " changed: got " << +got[first_bad] << ", sent "
              << +values[first_bad]);
  // Also through a copy made on the device.
  const std::vector<T> cloned = dev.clone().to_vector<T>();
  REQUIRE(std::memcmp(cloned.data(), values.data(), values.size() * sizeof(T)) == 0);
}

TEST_CASE("cuda values survive cpu -> cuda -> cpu exactly", "[cuda][allocator][copy]") {
  Generator gen(11);
  for (size_t n : {size_t(1), size_t(13), size_t(1000), size_t(1 << 20) + 3}) {
    const std::string size = " n=" + std::to_string(n);
    SECTION("f32" + size) {
      std::vector<float> v(n);
      for (auto& e : v) e = float(gen.normal() * 100.0);
      const float specials[] = {0.0f,
                                -0.0f,
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::denorm_min(),
                                std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::lowest()};
      for (size_t i = 0; i < std::min(n, sizeof(specials) / sizeof(float)); ++i) v[i] = specials[i];
      require_round_trip(v, "f32" + size);
    }
    SECTION("f64" + size) {
      std::vector<double> v(n);
      for (auto& e : v) e = gen.normal() * 1e10;
      const double specials[] = {-0.0, std::numeric_limits<double>::denorm_min(),
                                 std::numeric_limits<double>::max(),
                                 std::numeric_limits<double>::quiet_NaN(), 1.0 / 3.0};
      for (size_t i = 0; i < std::min(n, sizeof(specials) / sizeof(double)); ++i)
        v[i] = specials[i];
      require_round_trip(v, "f64" + size);
    }
    SECTION("i64" + size) {
      std::vector<int64_t> v(n);
      for (auto& e : v) e = int64_t(gen.next_u64());
      const int64_t specials[] = {std::numeric_limits<int64_t>::min(),
                                  std::numeric_limits<int64_t>::max(), -1, 0};
      for (size_t i = 0; i < std::min(n, sizeof(specials) / sizeof(int64_t)); ++i)
        v[i] = specials[i];
      require_round_trip(v, "i64" + size);
    }
    SECTION("u8" + size) {
      std::vector<uint8_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i < 256 ? i : gen.below(256));
      require_round_trip(v, "u8" + size);
    }
    SECTION("i32" + size) {
      std::vector<int32_t> v(n);
      for (auto& e : v) e = int32_t(uint32_t(gen.next_u64()));
      require_round_trip(v, "i32" + size);
    }
  }
  SECTION("a transposed view goes to the device as its logical (row-major) values") {
    const Tensor host = nd::uniform_tensor({31, 33}, -1.0, 1.0, gen).transpose(0, 1);
    nd::test::require_equal(host.to(kCuda).to(Device::cpu()), host.contiguous(),
                            "transposed (33, 31) round trip");
  }
}

}  // namespace
