// Tensor basics: factories, views sharing storage, copies, dtype casts, printing, errors.
#include "engine/ops.h"
#include "test/catch.h"

using namespace nd;

namespace {
bool throws_with(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
    return true;
  }
  return false;
}
}  // namespace

TEST_CASE("tensor factories and properties", "[tensor]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::F32);
  CHECK(z.device().is_cpu());
  CHECK(z.is_contiguous());
  for (float v : z.to_vector<float>()) CHECK(v == 0.0f);
  Tensor f = Tensor::full({4}, 2.5, DType::F64);
  for (double v : f.to_vector<double>()) CHECK(v == 2.5);
  Tensor s = Tensor::scalar(3.0);
  CHECK(s.dim() == 0);
  CHECK(s.item() == 3.0);
  Tensor i = Tensor::from_vector<int64_t>({1, 2, 3}, {3});
  CHECK(i.dtype() == DType::I64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("views share storage and index correctly", "[tensor]") {
  Tensor a = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = a.transpose(0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(!t.is_contiguous());
  CHECK(t.storage() == a.storage());
  CHECK(t.contiguous().to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  Tensor r = a.reshape({3, -1});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.storage() == a.storage());  // contiguous reshape is a view
  Tensor sl = a.slice(1, 1, 3);
  CHECK(sl.shape() == Shape{2, 2});
  CHECK(sl.to_vector<float>() == std::vector<float>{1, 2, 4, 5});
  Tensor p = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7}, {2, 2, 2}).permute({2, 0, 1});
  CHECK(p.contiguous().to_vector<float>() == std::vector<float>{0, 2, 4, 6, 1, 3, 5, 7});
  Tensor stepped = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6}, {7}).slice(0, 1, 7, 3);
  CHECK(stepped.to_vector<float>() == std::vector<float>{1, 4});
  // Writing through a slice view changes the base.
  sl.copy_(Tensor::from_vector<float>({9, 9, 9, 9}, {2, 2}));
  CHECK(a.to_vector<float>() == std::vector<float>{0, 9, 9, 3, 9, 9});
}

TEST_CASE("dtype casts and clone", "[tensor]") {
  Tensor a = Tensor::from_vector<float>({1.5f, -2.25f, 3.0f}, {3});
  CHECK(a.to(DType::F64).to_vector<double>() == std::vector<double>{1.5, -2.25, 3.0});
  CHECK(a.to(DType::I64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});
  Tensor u = Tensor::from_vector<uint8_t>({0, 128, 255}, {3});
  CHECK(u.to(DType::F32).to_vector<float>() == std::vector<float>{0, 128, 255});
  Tensor c = a.clone();
  CHECK(c.storage() != a.storage());
  c.fill_(0);
  CHECK(a.to_vector<float>()[0] == 1.5f);
}

TEST_CASE("printing shows shape, dtype and values", "[tensor]") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  const std::string s = a.to_string();
  CHECK(s.find("(2, 2)") != std::string::npos);
  CHECK(s.find("float32") != std::string::npos);
  CHECK(s.find("[[1, 2],\n [3, 4]]") != std::string::npos);
  CHECK(Tensor().to_string() == "Tensor(undefined)");
}

TEST_CASE("shape errors name what is wrong", "[tensor]") {
  CHECK(throws_with([] { Tensor::zeros({2, 3}).reshape({4, 2}); }, "has 6 elements"));
  CHECK(throws_with(
      [] {
        ops::add(Tensor::zeros({2, 3}), Tensor::zeros({4}));
      },
      "do not broadcast"));
  CHECK(throws_with(
      [] {
        ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2}));
      },
      "inner dimensions differ"));
  CHECK(throws_with([] { Tensor::zeros({2}).data<double>(); }, "accessed as float64"));
  CHECK(throws_with([] { Tensor().shape(); }, "undefined tensor"));
  CHECK(throws_with([] { parse_device("gpu"); }, "expected cpu, cuda"));
  CHECK(throws_with(
      [] {
        ops::cross_entropy(Tensor::zeros({2, 3}), Tensor::from_vector<int64_t>({0, 3}, {2}));
      },
      "outside [0, 3)"));
}

TEST_CASE("a CUDA device request fails clearly without a device", "[tensor]") {
  // --device auto never picks an emulated device (they are for tests, and slow).
  if (cuda_emulated()) CHECK(parse_device("auto").is_cpu());
  if (cuda_device_count() > 0) return;  // only meaningful on machines without a GPU
  CHECK(throws_with([] { parse_device("cuda"); }, "--device"));
  CHECK(parse_device("auto").is_cpu());
}

TEST_CASE("CPU allocator returns every byte", "[tensor]") {
  const int64_t before = allocator_stats(Device::cpu()).bytes_in_use;
  {
    Tensor a = Tensor::zeros({1000, 100});
    Tensor b = ops::sigmoid(a);
    CHECK(allocator_stats(Device::cpu()).bytes_in_use >= before + 2 * 400000);
  }
  CHECK(allocator_stats(Device::cpu()).bytes_in_use == before);
}

TEST_CASE("transposing copies (tiled) match naive indexing, gather and scatter", "[tensor]") {
  // (3, 70, 45) permuted so the unit-stride dim is not last; sizes not multiples of the tile.
  std::vector<float> v(3 * 70 * 45);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  Tensor a = Tensor::from_vector(v, {3, 70, 45});
  Tensor p = a.permute({0, 2, 1});  // (3, 45, 70), strides (3150, 1, 45)
  const std::vector<float> got = p.contiguous().to_vector<float>();
  bool ok = true;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t i = 0; i < 45; ++i)
      for (int64_t j = 0; j < 70; ++j)
        ok = ok && got[size_t((b * 45 + i) * 70 + j)] == v[size_t((b * 70 + j) * 45 + i)];
  CHECK(ok);
  // Scatter: writing the permuted values back through the view reproduces the original.
  Tensor back = Tensor::zeros({3, 70, 45});
  back.permute({0, 2, 1}).copy_(Tensor::from_vector(got, {3, 45, 70}));
  CHECK(back.to_vector<float>() == v);
  // The unit-stride dimension in front of the batch: (45, 3, 70) view.
  Tensor q = a.permute({2, 0, 1});
  const std::vector<float> gq = q.contiguous().to_vector<float>();
  ok = true;
  for (int64_t i = 0; i < 45; ++i)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t j = 0; j < 70; ++j)
        ok = ok && gq[size_t((i * 3 + b) * 70 + j)] == v[size_t((b * 70 + j) * 45 + i)];
  CHECK(ok);
}
