// Second, independent checks of rules that one assertion alone held (each found by changing the
// code and seeing the suite still pass): cross-entropy and its gradient at logits {800, 0, -800};
// Delinear's bias correction (a per-block shift of the input leaves the output unchanged); the
// running-statistics momentum 0.1 of every deconvolution layer and of BatchNorm2d; SGD's weight
// decay inside the momentum over many steps; batch norm's backward against its closed form; the
// conv weight gradient with dilation against the direct sum.
#include <cmath>
#include <map>

#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "layers/batchnorm.h"
#include "layers/deconv.h"
#include "test/catch.h"
#include "test/compare.h"

using namespace nd;

namespace {

Tensor f64_leaf(const Shape& shape, Generator& gen) {
  Tensor t = uniform_tensor(shape, -1, 1, gen, DType::F64);
  t.set_requires_grad(true);
  return t;
}

// Buffers of a module by name.
std::map<std::string, Tensor> buffers(const Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.named_buffers()) out[name] = t.detach().clone();
  return out;
}

// After one training forward, each float buffer of `layer` (which started at `old`) must be
// 0.9 old + 0.1 batch, the batch value being what `twin` (the same layer with momentum 1, so its
// buffers become the batch's statistics) holds.
void check_momentum(const std::map<std::string, Tensor>& old, const Module& layer,
                    const Module& twin) {
  const auto now = buffers(layer), batch = buffers(twin);
  for (const auto& [name, t] : now) {
    if (t.dtype() != DType::F32) continue;
    INFO(name);
    const auto o = old.at(name).to_vector<double>(), b = batch.at(name).to_vector<double>();
    std::vector<double> want(o.size());
    for (size_t i = 0; i < o.size(); ++i) want[i] = 0.9 * o[i] + 0.1 * b[i];
    CHECK_ALL_CLOSE(t.to_vector<double>(), want, 1e-5, 1e-6, name + " = 0.9 old + 0.1 batch");
    // The batch value really differs from the old one, so the check can tell the weights apart.
    CHECK(test::max_abs(ops::sub(old.at(name), batch.at(name))) > 1e-3);
  }
}

// Random old values for every float buffer (same shapes), loaded into the module.
std::map<std::string, Tensor> randomise_buffers(Module& m, Generator& gen) {
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : m.state_dict())
    state[name] = t.dtype() == DType::F32 ? uniform_tensor(t.shape(), -0.5, 0.5, gen) : t;
  m.load_state_dict(state);
  return buffers(m);
}

}  // namespace

TEST_CASE("cross-entropy and its gradient stay finite at logits {800, 0, -800}", "[reference]") {
  for (DType dtype : {DType::F32, DType::F64}) {
    INFO(dtype_name(dtype));
    // One row per label: the loss is logsumexp - z[label] = 800 - z[label] (+ e^-800, nothing).
    Tensor z =
        Tensor::from_vector<double>({800, 0, -800, 800, 0, -800, 800, 0, -800}, {3, 3}).to(dtype);
    z.set_requires_grad(true);
    Tensor labels = Tensor::from_vector<int64_t>({0, 1, 2}, {3});
    Tensor loss = ops::cross_entropy(z, labels);
    CHECK(loss.item() == (0.0 + 800.0 + 1600.0) / 3.0);
    loss.backward();
    // softmax is (1, 0, 0) in every row (e^-800 underflows to 0): grad = (softmax - onehot) / 3.
    const std::vector<double> want = {0, 0, 0, 1.0 / 3, -1.0 / 3, 0, 1.0 / 3, 0, -1.0 / 3};
    const std::vector<double> got = z.grad().to_vector<double>();
    for (double g : got) CHECK(std::isfinite(g));
    CHECK_ALL_CLOSE(got, want, 1e-6, 1e-7, "cross-entropy gradient");
  }
}

TEST_CASE("Delinear's bias correction: a per-block shift of the input changes nothing",
          "[deconv]") {
  // Training mode whitens x - mean, so adding the same vector c to every block of every row moves
  // the mean by c and leaves the output as it was; without the correction b - W D mean the output
  // would move by W D c.
  for (DeconvPath path : {DeconvPath::Fused, DeconvPath::Composite}) {
    for (bool bias : {true, false}) {
      INFO((path == DeconvPath::Fused ? "fused" : "composite") << (bias ? ", bias" : ""));
      DeconvSettings s;
      s.block = 4;
      s.path = path;
      Generator gen(21);
      Delinear layer(12, 5, bias, s, gen);
      Tensor x = normal_tensor({16, 12}, 0, 1, gen);
      const std::vector<float> shift = {3.0f, -2.0f, 0.5f, 7.0f};
      std::vector<float> shifted = x.to_vector<float>();
      for (size_t i = 0; i < shifted.size(); ++i) shifted[i] += shift[i % 4];
      NoGradGuard no_grad;
      const Tensor y = layer(x);
      const Tensor y_shifted = layer(Tensor::from_vector(shifted, {16, 12}));
      test::require_close(y_shifted, y, 1e-4, 1e-4, "Delinear output after the shift");
      CHECK(test::max_abs(y) > 0.1);
    }
  }
}

TEST_CASE("deconvolution layers update running statistics with momentum 0.1", "[deconv]") {
  DeconvSettings fixed;  // the defaults: momentum 0.1
  CHECK(fixed.momentum == 0.1);
  DeconvSettings one = fixed;
  one.momentum = 1.0;
  SECTION("FastDeconv") {
    ops::Conv2dParams p;
    p.padding = 1;
    Generator g1(5), g2(5), gen(6);
    FastDeconv layer(4, 6, 3, p, true, fixed, g1), twin(4, 6, 3, p, true, one, g2);
    const auto old = randomise_buffers(layer, gen);
    Tensor x = normal_tensor({3, 4, 7, 7}, 0.5, 1, gen);
    layer(x);
    twin(x);
    check_momentum(old, layer, twin);
  }
  SECTION("Delinear") {
    Generator g1(7), g2(7), gen(8);
    DeconvSettings s = fixed, s1 = one;
    s.block = s1.block = 4;
    Delinear layer(8, 3, true, s, g1), twin(8, 3, true, s1, g2);
    const auto old = randomise_buffers(layer, gen);
    Tensor x = normal_tensor({10, 8}, 1.0, 1, gen);
    layer(x);
    twin(x);
    check_momentum(old, layer, twin);
    // The batch mean by hand: rows of 4 consecutive features.
    const auto xv = x.to_vector<double>();
    std::vector<double> mean(4, 0.0);
    for (size_t i = 0; i < xv.size(); ++i) mean[i % 4] += xv[i] / 20.0;
    CHECK_ALL_CLOSE(buffers(twin).at("running_mean").to_vector<double>(), mean, 1e-5, 1e-6,
                    "batch mean");
  }
  SECTION("ChannelDeconv (the first batch initialises, the second blends)") {
    ChannelDeconv layer(3, fixed), twin(3, one);
    Generator gen(9);
    layer(normal_tensor({4, 5, 4, 4}, 0, 1, gen));
    twin(normal_tensor({4, 5, 4, 4}, 0, 1, gen));
    const auto old = buffers(layer);
    Tensor x = normal_tensor({4, 5, 4, 4}, 2.0, 3, gen);
    layer(x);
    twin(x);
    check_momentum(old, layer, twin);
  }
}

TEST_CASE("BatchNorm2d's running statistics: 0.9 old + 0.1 batch, unbiased variance", "[layers]") {
  BatchNorm2d bn(3);
  Generator gen(10);
  Tensor x = normal_tensor({4, 3, 2, 5}, 1.5, 2, gen);
  bn(x);
  const auto xv = x.to_vector<double>();
  const auto state = bn.state_dict();
  const auto rm = state.at("running_mean").to_vector<double>();
  const auto rv = state.at("running_var").to_vector<double>();
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0, sq = 0;
    const int64_t count = 4 * 2 * 5;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 10; ++i) sum += xv[size_t((n * 3 + c) * 10 + i)];
    const double mean = sum / count;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 10; ++i) sq += std::pow(xv[size_t((n * 3 + c) * 10 + i)] - mean, 2);
    CHECK(std::abs(rm[size_t(c)] - 0.1 * mean) < 1e-6);
    CHECK(std::abs(rv[size_t(c)] - (0.9 + 0.1 * sq / (count - 1))) < 1e-5);
  }
}

TEST_CASE("SGD applies weight decay inside the momentum, over many steps", "[optim]") {
  // PyTorch: d = g + wd p; buf = m buf + d (buf = d at the first step); p -= lr buf. Five steps
  // with changing gradients against this loop, and against the other order (decay outside the
  // momentum), which must differ.
  const double lr = 0.05, m = 0.8, wd = 0.1;
  Tensor p = Tensor::from_vector<double>({1.0, -2.0, 0.5}, {3});
  p.set_requires_grad(true);
  Sgd sgd({p}, lr, m, wd);
  std::vector<double> want = {1.0, -2.0, 0.5}, buf(3, 0.0), other = want, other_buf(3, 0.0);
  for (int step = 0; step < 5; ++step) {
    const std::vector<double> g = {0.3 * step - 0.2, 0.1 + 0.05 * step, -0.4};
    p.set_grad(Tensor::from_vector<double>(g, {3}));
    sgd.step();
    for (size_t i = 0; i < 3; ++i) {
      const double d = g[i] + wd * want[i];
      buf[i] = step == 0 ? d : m * buf[i] + d;
      want[i] -= lr * buf[i];
      other_buf[i] = step == 0 ? g[i] : m * other_buf[i] + g[i];
      other[i] -= lr * (other_buf[i] + wd * other[i]);
    }
  }
  CHECK_ALL_CLOSE(p.to_vector<double>(), want, 1e-14, 1e-15, "SGD after 5 steps");
  double apart = 0;
  for (size_t i = 0; i < 3; ++i) apart = std::max(apart, std::abs(want[i] - other[i]));
  CHECK(apart > 1e-4);
}

TEST_CASE("batch norm's backward equals its closed form", "[reference]") {
  // Training mode, y = gamma xhat + beta with xhat = (x - mean) / sqrt(var + eps) (biased var):
  // dx = gamma / (M sqrt(var + eps)) (M dy - sum dy - xhat sum(dy xhat)), dgamma = sum(dy xhat),
  // dbeta = sum(dy), sums over the M = N H W values of a channel.
  Generator gen(12);
  const int64_t n = 3, c = 2, hw = 4, count = n * hw;
  const double eps = 1e-5;
  Tensor x = f64_leaf({n, c, 2, 2}, gen), gamma = f64_leaf({c}, gen), beta = f64_leaf({c}, gen);
  Tensor dy = normal_tensor({n, c, 2, 2}, 0, 1, gen, DType::F64);
  Tensor rm = Tensor::zeros({c}, DType::F64), rv = Tensor::ones({c}, DType::F64);
  Tensor y = ops::batch_norm(x, gamma, beta, rm, rv, true, 0.1, eps);
  ops::sum(ops::mul(y, dy)).backward();
  const auto xv = x.to_vector<double>(), dyv = dy.to_vector<double>(),
             gv = gamma.to_vector<double>();
  std::vector<double> dx(xv.size()), dgamma(static_cast<size_t>(c)), dbeta(static_cast<size_t>(c));
  for (int64_t ch = 0; ch < c; ++ch) {
    auto at = [&](int64_t i, int64_t j) { return size_t((i * c + ch) * hw + j); };
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) mean += xv[at(i, j)] / count;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) var += std::pow(xv[at(i, j)] - mean, 2) / count;
    const double inv = 1.0 / std::sqrt(var + eps);
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        sum_dy += dyv[at(i, j)];
        sum_dy_xhat += dyv[at(i, j)] * (xv[at(i, j)] - mean) * inv;
      }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        const double xhat = (xv[at(i, j)] - mean) * inv;
        dx[at(i, j)] =
            gv[size_t(ch)] * inv / count * (count * dyv[at(i, j)] - sum_dy - xhat * sum_dy_xhat);
      }
    dgamma[size_t(ch)] = sum_dy_xhat;
    dbeta[size_t(ch)] = sum_dy;
  }
  CHECK_ALL_CLOSE(x.grad().to_vector<double>(), dx, 1e-9, 1e-12, "dx");
  CHECK_ALL_CLOSE(gamma.grad().to_vector<double>(), dgamma, 1e-9, 1e-12, "dgamma");
  CHECK_ALL_CLOSE(beta.grad().to_vector<double>(), dbeta, 1e-9, 1e-12, "dbeta");
}

TEST_CASE("the conv weight gradient with dilation equals the direct sum", "[reference]") {
  // dW[o, ci, ky, kx] = sum over n, i, j of dy[n, o, i, j] x[n, g ci, i s - p + ky d, j s - p + kx
  // d]
  struct Case {
    int64_t n, c, h, w, o, k, stride, pad, dil, groups;
  };
  Generator gen(13);
  for (const Case& c : {Case{2, 3, 9, 8, 4, 3, 1, 2, 2, 1}, Case{1, 4, 11, 10, 6, 3, 2, 3, 3, 2},
                        Case{2, 2, 7, 9, 2, 2, 1, 0, 4, 1}}) {
    INFO("k" << c.k << " s" << c.stride << " p" << c.pad << " d" << c.dil << " g" << c.groups);
    Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0, 1, gen, DType::F64);
    Tensor w = f64_leaf({c.o, c.c / c.groups, c.k, c.k}, gen);
    ops::Conv2dParams p;
    p.stride = c.stride, p.padding = c.pad, p.dilation = c.dil, p.groups = c.groups;
    Tensor y = ops::conv2d(x, w, Tensor(), p);
    Tensor dy = normal_tensor(y.shape(), 0, 1, gen, DType::F64);
    ops::sum(ops::mul(y, dy)).backward();
    const int64_t oh = y.size(2), ow = y.size(3), cg = c.c / c.groups, og = c.o / c.groups;
    const auto X = x.to_vector<double>(), DY = dy.to_vector<double>();
    std::vector<double> dw(size_t(w.numel()), 0.0);
    for (int64_t o = 0; o < c.o; ++o)
      for (int64_t ci = 0; ci < cg; ++ci)
        for (int64_t ky = 0; ky < c.k; ++ky)
          for (int64_t kx = 0; kx < c.k; ++kx) {
            double acc = 0;
            const int64_t channel = (o / og) * cg + ci;
            for (int64_t n = 0; n < c.n; ++n)
              for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j) {
                  const int64_t iy = i * c.stride - c.pad + ky * c.dil;
                  const int64_t ix = j * c.stride - c.pad + kx * c.dil;
                  if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                  acc += DY[size_t(((n * c.o + o) * oh + i) * ow + j)] *
                         X[size_t(((n * c.c + channel) * c.h + iy) * c.w + ix)];
                }
            dw[size_t(((o * cg + ci) * c.k + ky) * c.k + kx)] = acc;
          }
    CHECK_ALL_CLOSE(w.grad().to_vector<double>(), dw, 1e-12, 1e-12, "conv weight gradient");
  }
}
