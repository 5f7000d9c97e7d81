// Copies between the host and the GPUs (ops::transfer, engine/ops_copy.cpp): values of every
// element type survive cpu -> cuda -> cpu bitwise; a host-to-device copy from pageable memory is
// staged, so the host buffer may be overwritten and freed as soon as .to() returns, even while the
// device is still busy with earlier work; a copy from pinned memory (Tensor::pin_memory) is
// asynchronous and its pinned block is not handed out again while the copy may still read it;
// and copies between two GPUs keep their values while the source block is recycled (skipped with
// fewer than two GPUs). Device values are compared bitwise (NaN payloads, -0, denormals).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/allocator.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/cuda_runtime_api.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/cuda_cases.h"

namespace {

using nd::Device;
using nd::DType;
using nd::Generator;
using nd::Tensor;

const Device kCuda = Device::cuda(0);

template <typename T, size_t N>
void put_specials(std::vector<T>& v, const T (&specials)[N]) {
  for (size_t i = 0; i < std::min(v.size(), N); ++i) v[i] = specials[i];
}

// n values of T from gen, led by the type's special values.
template <typename T>
std::vector<T> sample_values(size_t n, Generator& gen) {
  std::vector<T> v(n);
  if constexpr (std::is_same_v<T, float>) {
    for (auto& e : v) e = float(gen.normal() * 100.0);
    using L = std::numeric_limits<float>;
    const float specials[] = {0.0f,           -0.0f,           L::infinity(), -L::infinity(),
                              L::quiet_NaN(), L::denorm_min(), L::max(),      L::lowest()};
    put_specials(v, specials);
  } else if constexpr (std::is_same_v<T, double>) {
    for (auto& e : v) e = gen.normal() * 1e10;
    using L = std::numeric_limits<double>;
    const double specials[] = {-0.0, L::denorm_min(), L::max(), L::quiet_NaN(), 1.0 / 3.0};
    put_specials(v, specials);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    for (auto& e : v) e = int64_t(gen.next_u64());
    using L = std::numeric_limits<int64_t>;
    const int64_t specials[] = {L::min(), L::max(), -1, 0};
    put_specials(v, specials);
  } else if constexpr (std::is_same_v<T, int32_t>) {
    for (auto& e : v) e = int32_t(uint32_t(gen.next_u64()));
    using L = std::numeric_limits<int32_t>;
    const int32_t specials[] = {L::min(), L::max(), -1, 0};
    put_specials(v, specials);
  } else {
    static_assert(std::is_same_v<T, uint8_t>);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i < 256 ? i : gen.below(256));
  }
  return v;
}

// Index of the first element of t (any device) whose bits differ from `want`, or -1; a size
// mismatch counts as index 0.
template <typename T>
int64_t first_changed(const Tensor& t, const std::vector<T>& want) {
  const std::vector<T> got = t.to_vector<T>();
  if (got.size() != want.size()) return 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) return int64_t(i);
  return -1;
}

template <typename T>
void check_same_bits(const Tensor& t, const std::vector<T>& want, const std::string& what) {
  const int64_t bad = first_changed(t, want);
  INFO(what << ": " << want.size() << " values of " << nd::dtype_name(nd::dtype_of<T>()) << " on "
            << t.device().str());
  if (bad >= 0) {
    const std::vector<T> got = t.to_vector<T>();
    const size_t i = size_t(bad);
    FAIL_CHECK(what << ": element " << bad << " changed: got " << (i < got.size() ? +got[i] : T(0))
                    << ", sent " << +want[i]);
  }
  CHECK(bad < 0);
}

// Runs f(T{}) in one SECTION per element type.
template <typename F>
void for_every_dtype(const std::string& prefix, F f) {
  SECTION(prefix + "f32") {
    f(float{});
  }
  SECTION(prefix + "f64") {
    f(double{});
  }
  SECTION(prefix + "i32") {
    f(int32_t{});
  }
  SECTION(prefix + "i64") {
    f(int64_t{});
  }
  SECTION(prefix + "u8") {
    f(uint8_t{});
  }
}

// Element counts of the copy tests: 1, odd, and 4 MiB of float (left out under ND_TEST_SMALL=1).
std::vector<size_t> copy_sizes() {
  std::vector<size_t> sizes = {1, 13, 1000};
  if (!nd::test::left_out_when_small(int64_t(1) << 20)) sizes.push_back((size_t(1) << 20) + 3);
  return sizes;
}

// Runs f(values, gen) for every size of copy_sizes() and every element type, each in its own
// SECTION, with values = sample_values<T>(n, gen) and gen seeded from `seed` and n.
template <typename F>
void for_every_size_and_dtype(uint64_t seed, F f) {
  for (size_t n : copy_sizes()) {
    for_every_dtype("n=" + std::to_string(n) + " ", [&](auto zero) {
      using T = decltype(zero);
      Generator gen(seed + n);
      const std::vector<T> values = sample_values<T>(n, gen);
      f(values, gen);
    });
  }
}

// Queues tens of milliseconds of work on `d`'s compute stream (on an H200: 40 products of
// 4096 x 4096 float matrices, ~2 ms each) and returns without waiting, so a transfer queued now
// runs well after the host has gone on. Small sizes under ND_TEST_SMALL=1 and in the device
// emulation, whose streams run only when waited on: any queued work keeps a copy behind it.
void keep_device_busy(Device d) {
  const int64_t n = nd::test::small_sizes_only() || nd::cuda_emulated() ? 64 : 4096;
  const Tensor a = Tensor::full({n, n}, 0.5, DType::F32, d);  // made on the device: no host work
  for (int i = 0; i < 40; ++i) nd::ops::matmul(a, a);
}

}  // namespace

TEST_CASE("cuda values survive cpu -> cuda -> cpu exactly", "[cuda][copy][transfer][memcheck]") {
  for_every_size_and_dtype(11, [](const auto& values, Generator&) {
    const size_t n = values.size();
    const Tensor host = Tensor::from_vector(values, {int64_t(n)});
    const Tensor dev = host.to(kCuda);
    REQUIRE(dev.device() == kCuda);
    REQUIRE(dev.dtype() == host.dtype());
    const Tensor back = dev.to(Device::cpu());
    REQUIRE(back.device().is_cpu());
    check_same_bits(back, values, "round trip");
    check_same_bits(dev.clone(), values, "a copy made on the device");
  });
  SECTION("a transposed view goes to the device as its logical (row-major) values") {
    Generator gen(12);
    const Tensor host = nd::uniform_tensor({31, 33}, -1.0, 1.0, gen).transpose(0, 1);
    nd::test::require_equal(host.to(kCuda).to(Device::cpu()), host.contiguous(),
                            "transposed (33, 31) round trip");
  }
}

TEST_CASE("cuda a copy from pageable memory keeps the values sent after the host buffer is gone",
          "[cuda][copy][transfer][memcheck]") {
  for_every_size_and_dtype(21, [](const auto& values, Generator& gen) {
    using T = typename std::decay_t<decltype(values)>::value_type;
    const size_t n = values.size();
    const std::vector<T>& first = values;
    const std::vector<T> second = sample_values<T>(n, gen);
    keep_device_busy(kCuda);
    // Two copies of the same size back to back while the device is busy: each is staged in its
    // own pinned block (the first's block may not be reused while its copy is queued).
    Tensor host_a = Tensor::from_vector(first, {int64_t(n)});
    Tensor host_b = Tensor::from_vector(second, {int64_t(n)});
    REQUIRE_FALSE(host_a.is_pinned());
    const Tensor dev_a = host_a.to(kCuda);
    const Tensor dev_b = host_b.to(kCuda);
    // Overwrite and free the pageable sources at once.
    std::memset(host_a.raw_data(), 0xA5, n * sizeof(T));
    std::memset(host_b.raw_data(), 0x5A, n * sizeof(T));
    host_a = Tensor();
    host_b = Tensor();
    check_same_bits(dev_a, first, "first pageable copy");
    check_same_bits(dev_b, second, "second pageable copy");
  });
}

TEST_CASE("cuda a copy from pinned memory keeps the values sent",
          "[cuda][copy][transfer][memcheck]") {
  for_every_size_and_dtype(31, [](const auto& values, Generator&) {
    const size_t n = values.size();
    const Tensor host = Tensor::from_vector(values, {int64_t(n)});
    const Tensor pinned = host.pin_memory();
    REQUIRE(pinned.is_pinned());
    REQUIRE_FALSE(host.is_pinned());
    REQUIRE(pinned.dtype() == host.dtype());
    check_same_bits(pinned, values, "pin_memory's host copy");
    keep_device_busy(kCuda);
    const Tensor dev = pinned.to(kCuda);
    REQUIRE(dev.device() == kCuda);
    check_same_bits(dev, values, "pinned copy");
  });
  SECTION("pin_memory of a device tensor is refused with a clear message") {
    const Tensor dev = Tensor::zeros({4}, DType::F32, kCuda);
    nd::test::check_error_contains([&] { dev.pin_memory(); }, {"pin_memory", "not the host"});
  }
}

TEST_CASE("cuda a pinned block is not handed out again while its copy may be in flight",
          "[cuda][copy][transfer][memcheck]") {
  const int64_t n = nd::test::small_sizes_only() ? (1 << 16) : (1 << 22);  // 16 MiB of float
  Generator gen(41);
  const std::vector<float> values = sample_values<float>(size_t(n), gen);
  Tensor pinned = Tensor::from_vector(values, {n}).pin_memory();
  const void* block = pinned.storage()->data();

  keep_device_busy(kCuda);
  const Tensor dev = pinned.to(kCuda);  // waits on the copy stream for the queued work
  // Recorded after the copy on the copy stream: not done while the copy may still run.
  cudaEvent_t after_copy = nd::kernels::cuda_event_create();
  nd::kernels::cuda_event_record(after_copy, nd::kernels::cuda_copy_stream(0));
  const bool in_flight = !nd::kernels::cuda_event_done(after_copy);

  // Free the source and ask for a block of the same size at once; scribble over it.
  pinned = Tensor();
  Tensor other = Tensor::empty({n}).pin_memory();
  const bool reused = other.storage()->data() == block;
  const bool still_in_flight = !nd::kernels::cuda_event_done(after_copy);
  other.fill_(-7.0);
  INFO("copy in flight when its block was freed: "
       << (in_flight ? "yes" : "no")
       << "; after the next request: " << (still_in_flight ? "yes" : "no")
       << "; block handed out again: " << (reused ? "yes" : "no"));
  if (!in_flight)
    WARN(
        "the copy had finished before its block was freed (CUDA_LAUNCH_BLOCKING=1 or a "
        "sanitizer serialises the device), so only the values are checked");
  // Handing the block out while the copy after it had not finished would be the defect.
  CHECK_FALSE((reused && still_in_flight));
  nd::synchronize(kCuda);  // the compute stream waits for the copy
  check_same_bits(dev, values, "the device copy after its pinned source was recycled");
  nd::kernels::cuda_event_destroy(after_copy);

  // Once the copy has finished, a request of the size is served from the cache (no new
  // cudaHostAlloc).
  const nd::AllocatorStats before = nd::pinned_stats();
  other = Tensor();
  Tensor again = Tensor::empty({n}).pin_memory();
  const nd::AllocatorStats after = nd::pinned_stats();
  INFO("pinned cache hits " << before.cache_hits << " -> " << after.cache_hits
                            << ", pinned mallocs " << before.device_mallocs << " -> "
                            << after.device_mallocs);
  CHECK(after.cache_hits > before.cache_hits);
  CHECK(after.device_mallocs == before.device_mallocs);
}

TEST_CASE("cuda copies between two GPUs keep their values while the source block is recycled",
          "[cuda][copy][transfer][multi_gpu]") {
  if (nd::cuda_device_count() < 2)
    ND_SKIP_TEST("needs 2 CUDA devices, this machine has " << nd::cuda_device_count());
  const Device other = Device::cuda(1);
  for_every_size_and_dtype(51, [other](const auto& values, Generator&) {
    using T = typename std::decay_t<decltype(values)>::value_type;
    const size_t n = values.size();
    keep_device_busy(kCuda);
    Tensor src = Tensor::from_vector(values, {int64_t(n)}).to(kCuda);
    const Tensor dst = src.to(other);
    REQUIRE(dst.device() == other);
    // Recycle the source block at once: the next tensor of its size on cuda:0 reuses it, and
    // its fill must not reach the copy.
    src = Tensor();
    Tensor scribble = Tensor::full({int64_t(n)}, 3.0, nd::dtype_of<T>(), kCuda);
    check_same_bits(dst, values, "cuda:0 -> cuda:1");
    check_same_bits(dst.to(kCuda), values, "cuda:1 -> cuda:0");
    check_same_bits(scribble, std::vector<T>(n, T(3)), "the recycled block's new contents");
  });
}
