// Every network on CUDA against the same network on the CPU (float32 both): built from one seed,
// one training-mode forward and backward of a small batch, compared in logits, loss, every
// parameter gradient and every buffer after the step's statistics updates; then the eval-mode
// logits.
#include "engine/autograd.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/net_tables.h"

using namespace nd;

namespace {

const Device kCuda = Device::cuda(0);

struct Pass {
  Tensor logits, loss;
  std::map<std::string, Tensor> grads, buffers;
};

Pass run(Module& net, const Tensor& x, const Tensor& y, Device device) {
  net.zero_grad();
  net.train();
  Tensor logits = net(x.to(device));
  Tensor loss = ops::cross_entropy(logits, y.to(device));
  loss.backward();
  Pass p{logits.detach().to(Device::cpu()), loss.detach().to(Device::cpu()), {}, {}};
  for (auto& [name, t] : net.named_parameters()) p.grads[name] = t.grad().to(Device::cpu());
  for (auto& [name, t] : net.named_buffers()) p.buffers[name] = t.detach().to(Device::cpu());
  return p;
}

// Deep networks accumulate float rounding differently on the two devices (cuDNN algorithms,
// reduction orders, Newton-Schulz on whitened statistics), so 1e-2 relative plus 1e-3 of the
// tensor's scale; a wrong index or a missing term moves values by the full scale.
void close(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  test::require_close(gpu, cpu, 1e-2, 1e-3 * std::max(1.0, test::max_abs(cpu)), what);
}

}  // namespace

TEST_CASE("cuda: every network matches the CPU in forward, backward and eval", "[cuda][nets]") {
  std::vector<test::NetCase> cases = test::cifar_cases();
  for (const auto& c : test::imagenet_cases()) cases.push_back(c);
  for (const auto& c : cases) {
    const std::string name = c.arch + " --norm " + c.norm;
    INFO(name);
    const bool imagenet = c.input == "imagenet";
    NetConfig cfg = test::net_config(c, imagenet ? 1000 : 10);
    cfg.height = cfg.width = imagenet ? 64 : 32;
    Generator g1(3), g2(3);
    auto cpu = build_net(cfg, g1), gpu = build_net(cfg, g2);
    gpu->to(kCuda);
    Generator data(9);
    const int64_t batch = 4;
    Tensor x = normal_tensor({batch, 3, cfg.height, cfg.width}, 0, 1, data);
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < batch; ++i) labels.push_back(int64_t(data.below(10)));
    Tensor y = Tensor::from_vector(labels, {batch});
    // Dropout masks come from each copy's own generator, seeded alike: they agree.
    const Pass a = run(*gpu, x, y, kCuda), b = run(*cpu, x, y, Device::cpu());
    close(a.logits, b.logits, name + " logits");
    close(a.loss, b.loss, name + " loss");
    for (auto& [p, g] : b.grads) close(a.grads.at(p), g, name + " grad of " + p);
    for (auto& [p, v] : b.buffers) close(a.buffers.at(p), v, name + " buffer " + p);
    cpu->eval();
    gpu->eval();
    NoGradGuard no_grad;
    close((*gpu)(x.to(kCuda)).to(Device::cpu()), (*cpu)(x), name + " eval logits");
  }
}
