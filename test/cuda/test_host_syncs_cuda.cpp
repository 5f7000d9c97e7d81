// A training step on the GPU (forward, cross entropy, backward, SGD with momentum and weight
// decay) never makes the host wait for the device: between the warm-up and the read of the loss,
// kernels::cuda_host_syncs() (stream synchronisations and device-to-host copies) does not move,
// and no new cudaMalloc happens; the loss read itself is one wait. Each network is its own test
// case: the Fashion-MNIST MLP (plain and ND) and ResNet-18 ND at batch 8 (2 in the device
// emulation, whose runtime also counts every wait below our wrappers: kernels::cuda_activity).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/cuda_runtime_api.h"
#include "nets/registry.h"
#include "test/catch.h"

namespace {

using nd::Device;
using nd::Tensor;

const Device kCuda = Device::cuda(0);

void check_step_adds_no_host_sync(const std::string& arch, const std::string& norm,
                                  int64_t in_channels, int64_t size, int64_t batch) {
  INFO(arch << " --norm " << norm << " at batch " << batch);
  nd::NetConfig cfg;
  cfg.arch = arch;
  cfg.norm = norm;
  cfg.num_classes = 10;
  cfg.in_channels = in_channels;
  cfg.height = cfg.width = size;
  nd::Generator gen(7);
  auto net = nd::build_net(cfg, gen);
  net->to(kCuda);
  net->train();
  nd::Sgd opt(net->parameters(), 0.01, 0.9, 5e-4);
  // The batch is already on the device, as the trainer's prefetcher leaves it.
  const Tensor x = nd::normal_tensor({batch, in_channels, size, size}, 0, 1, gen).to(kCuda);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(int64_t(gen.below(10)));
  const Tensor y = Tensor::from_vector(labels, {batch}).to(kCuda);
  Tensor loss;
  auto step = [&] {
    opt.zero_grad();
    loss = nd::ops::cross_entropy((*net)(x), y);
    loss.backward();
    opt.step();
  };
  // Warm-up: algorithm choices, momentum buffers and the allocator's cache are made here.
  for (int i = 0; i < 2; ++i) {
    step();
    REQUIRE(std::isfinite(loss.item()));
  }
  const int64_t syncs_before = nd::kernels::cuda_host_syncs();
  const int64_t mallocs_before = nd::allocator_stats(kCuda).device_mallocs;
  const nd::kernels::CudaActivity runtime_before = nd::kernels::cuda_activity();
  for (int i = 0; i < 3; ++i) step();
  const int64_t syncs_after = nd::kernels::cuda_host_syncs();
  const int64_t mallocs_after = nd::allocator_stats(kCuda).device_mallocs;
  const nd::kernels::CudaActivity runtime_after = nd::kernels::cuda_activity();
  // The runtime's own counts: every stream, event or device wait, whoever makes it.
  CHECK(runtime_after.host_syncs == runtime_before.host_syncs);
  CHECK(runtime_after.device_allocations == runtime_before.device_allocations);
  CHECK(runtime_after.kernel_launches > runtime_before.kernel_launches);
  const double last = loss.item();
  const int64_t syncs_read = nd::kernels::cuda_host_syncs();
  INFO("host syncs: " << syncs_before << " before 3 steps, " << syncs_after << " after, "
                      << syncs_read << " after reading the loss; device mallocs " << mallocs_before
                      << " -> " << mallocs_after);
  CHECK(std::isfinite(last));
  CHECK(syncs_after == syncs_before);
  CHECK(syncs_read > syncs_after);  // the counter does count: reading the loss waits
  CHECK(mallocs_after == mallocs_before);
}

}  // namespace

TEST_CASE("cuda a training step of the MLP adds no host synchronisation", "[cuda][syncs]") {
  check_step_adds_no_host_sync("mlp", "none", 1, 28, 64);
}

TEST_CASE("cuda a training step of the MLP --norm nd adds no host synchronisation",
          "[cuda][syncs]") {
  check_step_adds_no_host_sync("mlp", "nd", 1, 28, 64);
}

TEST_CASE("cuda a training step of ResNet-18 --norm nd adds no host synchronisation",
          "[cuda][syncs]") {
  check_step_adds_no_host_sync("resnet18", "nd", 3, 32, nd::cuda_emulated() ? 2 : 8);
}
