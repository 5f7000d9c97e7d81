// Network deconvolution layers: the fused path equals the composite (primitive-op) oracle in
// forward and every gradient, whitening works, eval/freeze use the running buffers, names and
// shapes follow the reference, bad settings are rejected.
#include <cmath>

#include "layers/deconv.h"
#include "test/catch.h"
#include "test/gradcheck.h"

using namespace nd;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// Runs forward + backward (loss = sum(y * r)) and returns y and the gradients of x and of every
// parameter, in a fixed order.
std::vector<Tensor> run(Module& m, const Tensor& x_in, uint64_t seed) {
  Tensor x = x_in.detach().clone();
  x.set_requires_grad(true);
  m.zero_grad();
  Tensor y = m(x);
  Generator gen(seed);
  Tensor r = normal_tensor(y.shape(), 0, 1, gen, y.dtype());
  ops::sum(ops::mul(y, r)).backward();
  std::vector<Tensor> out{y.detach(), x.grad()};
  for (const Tensor& p : m.parameters()) out.push_back(p.grad());
  return out;
}

void require_paths_equal(const std::string& what, Module& composite, Module& fused,
                         const Tensor& x) {
  INFO(what);
  const auto a = run(composite, x, 7), b = run(fused, x, 7);
  REQUIRE(a.size() == b.size());
  const char* names[] = {"output", "input grad"};
  for (size_t i = 0; i < a.size(); ++i) {
    INFO((i < 2 ? names[i] : "parameter grad " + std::to_string(i - 2)));
    REQUIRE(a[i].defined());
    REQUIRE(b[i].defined());
    CHECK(max_abs_diff(a[i], b[i]) <= 1e-9 * std::max(1.0, max_abs(a[i])));
  }
  // The running buffers were updated identically.
  for (auto& [name, t] : composite.named_buffers()) {
    INFO("buffer " << name);
    CHECK(max_abs_diff(t, fused.state_dict().at(name)) <= 1e-9 * std::max(1.0, max_abs(t)));
  }
}

struct ConvCase {
  int64_t n, c, h, w, o, k, stride, pad, dil, groups, block;
  bool bias;
};

std::string describe(const ConvCase& c) {
  std::ostringstream os;
  os << "N" << c.n << " C" << c.c << " " << c.h << "x" << c.w << " O" << c.o << " k" << c.k
     << " stride " << c.stride << " pad " << c.pad << " dil " << c.dil << " groups " << c.groups
     << " block " << c.block << (c.bias ? " bias" : "");
  return os.str();
}

std::shared_ptr<FastDeconv> make_deconv(const ConvCase& c, DeconvPath path, uint64_t seed,
                                        int64_t iters = 5) {
  Generator gen(seed);
  ops::Conv2dParams p;
  p.stride = c.stride, p.padding = c.pad, p.dilation = c.dil, p.groups = c.groups;
  DeconvSettings s;
  s.block = c.block, s.n_iter = iters, s.path = path;
  auto layer = std::make_shared<FastDeconv>(c.c, c.o, c.k, p, c.bias, s, gen);
  layer->to(DType::F64);
  return layer;
}

}  // namespace

TEST_CASE("FastDeconv: fused path equals the composite oracle", "[deconv]") {
  const ConvCase cases[] = {
      {2, 8, 9, 9, 6, 3, 1, 1, 1, 1, 4, true},    // two interleaved blocks
      {2, 6, 7, 9, 5, 3, 1, 1, 1, 1, 4, true},    // 6 % 4 != 0 -> gcd block 2, odd sizes
      {1, 3, 8, 8, 4, 3, 1, 1, 1, 1, 64, false},  // block capped at C (first layer), batch 1
      {2, 8, 7, 7, 8, 3, 1, 1, 1, 2, 64, true},   // groups 2: per-group matrices
      {2, 4, 7, 7, 4, 3, 2, 1, 1, 4, 64, true},   // depthwise, stride 2
      {3, 8, 6, 6, 5, 1, 2, 0, 1, 1, 4, true},    // 1x1 stride 2: every 36th NHWC row
      {2, 4, 5, 5, 3, 1, 1, 0, 1, 1, 2, false},   // 1x1 stride 1
      {2, 4, 11, 10, 3, 3, 1, 2, 2, 1, 2, true},  // padding 2, dilation 2
      {1, 5, 9, 9, 4, 5, 1, 2, 1, 1, 5, true},    // 5x5 kernel
  };
  for (const ConvCase& c : cases) {
    auto composite = make_deconv(c, DeconvPath::Composite, 3);
    auto fused = make_deconv(c, DeconvPath::Fused, 3);
    Generator gen(5);
    Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0.2, 1.0, gen, DType::F64);
    require_paths_equal("FastDeconv " + describe(c), *composite, *fused, x);
  }
}

TEST_CASE("FastDeconv: gradients of the composite path by central differences", "[deconv]") {
  for (const ConvCase& c : {ConvCase{2, 4, 5, 5, 3, 3, 1, 1, 1, 1, 2, true},
                            ConvCase{2, 2, 5, 5, 2, 3, 1, 1, 1, 2, 64, true},
                            ConvCase{2, 4, 4, 4, 3, 1, 1, 0, 1, 1, 2, true}}) {
    for (DeconvPath path : {DeconvPath::Composite, DeconvPath::Fused}) {
      auto layer = make_deconv(c, path, 11, 3);
      Generator gen(13);
      Tensor x = test::leaf({c.n, c.c, c.h, c.w}, gen);
      std::vector<Tensor> inputs{x};
      for (const Tensor& p : layer->parameters()) inputs.push_back(p);
      test::gradcheck(
          std::string(path == DeconvPath::Fused ? "fused " : "composite ") + describe(c),
          [layer](const std::vector<Tensor>& v) { return (*layer)(v[0]); }, inputs, 1e-6, 1e-5,
          1e-7);
    }
  }
}

TEST_CASE("Delinear and ChannelDeconv: fused equals composite", "[deconv]") {
  for (int64_t block : {4, 6, 16}) {  // 6 -> gcd(6, 20) = 2; 16 -> gcd 4... capped rules
    Generator g1(1), g2(1);
    DeconvSettings s;
    s.block = block, s.path = DeconvPath::Composite;
    Delinear composite(20, 7, true, s, g1);
    s.path = DeconvPath::Fused;
    Delinear fused(20, 7, true, s, g2);
    composite.to(DType::F64);
    fused.to(DType::F64);
    Generator gx(2);
    require_paths_equal("Delinear 20->7 block " + std::to_string(block), composite, fused,
                        normal_tensor({9, 20}, 0.5, 1.0, gx, DType::F64));
  }
  for (const Shape& shape : {Shape{16, 70}, Shape{4, 10, 6, 6}, Shape{3, 8, 2, 2}}) {
    DeconvSettings s;
    s.eps = 1e-2;
    s.path = DeconvPath::Composite;
    ChannelDeconv composite(4, s);
    s.path = DeconvPath::Fused;
    ChannelDeconv fused(4, s);
    composite.to(DType::F64);
    fused.to(DType::F64);
    Generator gx(3);
    require_paths_equal("ChannelDeconv(4) on " + shape_str(shape), composite, fused,
                        normal_tensor(shape, 0.3, 1.0, gx, DType::F64));
  }
}

TEST_CASE("Deconvolution whitens: D Cov D ~ I with enough iterations", "[deconv]") {
  Generator gen(21);
  Tensor x = normal_tensor({4, 8, 12, 12}, 0.0, 1.0, gen, DType::F64);
  ops::PatchSampling s;
  s.kernel = 3, s.padding = 1, s.stride = 1, s.block = 4;
  const int64_t nf = 3 * 3 * 4;
  auto [mean, cov] = ops::sampled_covariance(x, s, 1e-5);
  Tensor d = ops::newton_schulz(cov, 60);
  Tensor white = ops::matmul(ops::matmul(d, cov), d);  // covariance of the whitened patches
  CHECK(max_abs_diff(white, ops::eye(nf, DType::F64).reshape({1, 36, 36})) < 1e-6);
  // With the reference's 5 steps it is only an approximation that shrinks small eigenvalues.
  Tensor d5 = ops::newton_schulz(cov, 5);
  Tensor white5 = ops::matmul(ops::matmul(d5, cov), d5);
  CHECK(max_abs_diff(white5, ops::eye(nf, DType::F64).reshape({1, 36, 36})) > 1e-3);
}

TEST_CASE("FastDeconv: eval uses the running buffers; freeze switches to them", "[deconv]") {
  const ConvCase c{2, 4, 6, 6, 3, 3, 1, 1, 1, 1, 2, true};
  Generator gx(4);
  Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0, 1, gx, DType::F64);
  {
    Generator gen(1);
    DeconvSettings s;
    s.block = 2, s.momentum = 1.0;  // running = this batch's statistics
    FastDeconv layer(c.c, c.o, c.k, {1, 1, 1, 1}, true, s, gen);
    layer.to(DType::F64);
    Tensor train_out = layer(x);
    layer.eval();
    CHECK(max_abs_diff(layer(x), train_out) < 1e-12);
  }
  {
    Generator gen(1);
    DeconvSettings s;
    s.block = 2, s.freeze = true, s.freeze_iter = 2;
    FastDeconv layer(c.c, c.o, c.k, {1, 1, 1, 1}, true, s, gen);
    layer.to(DType::F64);
    // Steps with counter 0, 1, 2 compute fresh statistics and move the running buffers.
    for (int i = 0; i < 3; ++i) {
      const auto before = layer.state_dict().at("running_mean").to_vector<double>();
      layer(x);
      CHECK(layer.state_dict().at("running_mean").to_vector<double>() != before);
    }
    CHECK(layer.freeze_counter() == 3);
    // Counter 3 > freeze_iter: frozen, so the running buffers stay and serve like eval.
    const auto frozen_mean = layer.state_dict().at("running_mean").to_vector<double>();
    Tensor frozen_out = layer(x);
    CHECK(layer.state_dict().at("running_mean").to_vector<double>() == frozen_mean);
    layer.eval();
    CHECK(max_abs_diff(layer(x), frozen_out) < 1e-12);
    layer.train();
    // The counter wraps at 10 * freeze_iter, after which statistics are fresh again.
    for (int i = 0; i < 16; ++i) layer(x);
    CHECK(layer.freeze_counter() == 0);
    const auto before = layer.state_dict().at("running_mean").to_vector<double>();
    layer(x);
    CHECK(layer.state_dict().at("running_mean").to_vector<double>() != before);
  }
}

TEST_CASE("FastDeconv buffers follow the reference names and shapes", "[deconv]") {
  Generator gen(0);
  DeconvSettings s;
  auto shapes = [](const Module& m) {
    std::vector<std::string> out;
    for (auto& [name, t] : m.named_buffers()) out.push_back(name + " " + shape_str(t.shape()));
    return out;
  };
  // ResNet-18 layer1 conv, MobileNetV2 depthwise, ResNeXt grouped, first layer (block = C).
  CHECK(shapes(FastDeconv(64, 64, 3, {1, 1, 1, 1}, true, s, gen)) ==
        std::vector<std::string>{"running_mean (576)", "running_deconv (576, 576)"});
  CHECK(shapes(FastDeconv(32, 32, 3, {1, 1, 1, 32}, true, s, gen)) ==
        std::vector<std::string>{"running_mean (288)", "running_deconv (32, 9, 9)"});
  CHECK(shapes(FastDeconv(128, 128, 3, {1, 1, 1, 32}, true, s, gen)) ==
        std::vector<std::string>{"running_mean (1152)", "running_deconv (32, 36, 36)"});
  CHECK(shapes(FastDeconv(3, 64, 3, {1, 1, 1, 1}, true, s, gen)) ==
        std::vector<std::string>{"running_mean (27)", "running_deconv (27, 27)"});
  CHECK(FastDeconv(96, 8, 3, {1, 1, 1, 1}, true, s, gen).block() == 32);
  DeconvSettings fc;
  fc.block = 512;  // the reference's block-fc
  CHECK(shapes(Delinear(512, 10, true, fc, gen)) ==
        std::vector<std::string>{"running_mean (512)", "running_deconv (512, 512)"});
  // bias=False works (the reference crashes there).
  FastDeconv no_bias(4, 2, 3, {1, 1, 1, 1}, false, s, gen);
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK(no_bias(Tensor::ones({2, 4, 5, 5})).shape() == Shape{2, 2, 5, 5});
}

TEST_CASE("invalid deconvolution settings name the layer and the value", "[deconv]") {
  Generator gen(0);
  auto expect = [&](DeconvSettings s, const std::string& needle) {
    try {
      FastDeconv(8, 8, 3, {1, 1, 1, 1}, true, s, gen);
      FAIL("expected an error mentioning " << needle);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  DeconvSettings s;
  s.eps = 0;
  expect(s, "FastDeconv: eps must be > 0, got 0");
  s = {};
  s.n_iter = 0;
  expect(s, "FastDeconv: n_iter must be >= 1, got 0");
  s = {};
  s.block = 0;
  expect(s, "FastDeconv: block must be >= 1, got 0");
  s = {};
  s.sampling_stride = 0;
  expect(s, "FastDeconv: sampling stride must be >= 1, got 0");
  CHECK_THROWS_AS(FastDeconv(8, 6, 3, {1, 1, 1, 4}, true, {}, gen), Error);  // 6 % 4 groups
  DeconvSettings bad;
  bad.eps = -1;
  CHECK_THROWS_AS(Delinear(8, 2, true, bad, gen), Error);
  CHECK_THROWS_AS(ChannelDeconv(4, bad), Error);
}

TEST_CASE("ChannelDeconv: the reference's uncentred covariance differs", "[deconv]") {
  Generator gx(9);
  Tensor x = normal_tensor({32, 8}, 2.0, 1.0, gx, DType::F64);  // far from zero mean
  DeconvSettings s;
  s.eps = 1e-2;
  ChannelDeconv centred(4, s, true), uncentred(4, s, false);
  centred.to(DType::F64);
  uncentred.to(DType::F64);
  CHECK(max_abs_diff(centred(x), uncentred(x)) > 1e-2);
}
