// Double-precision gradient checks of every op's CPU backward (central differences).
#include "engine/ops.h"
#include "test/catch.h"
#include "test/gradcheck.h"

using namespace nd;
using nd::test::gradcheck;
using nd::test::leaf;
using V = std::vector<Tensor>;

TEST_CASE("gradcheck: broadcasting binary ops", "[gradcheck]") {
  Generator gen(1);
  gradcheck("add (3,4)+(4)", [](const V& v) { return ops::add(v[0], v[1]); },
            {leaf({3, 4}, gen), leaf({4}, gen)});
  gradcheck("sub (2,1,3)-(4,1)", [](const V& v) { return ops::sub(v[0], v[1]); },
            {leaf({2, 1, 3}, gen), leaf({4, 1}, gen)});
  gradcheck("mul (2,3,4)*(2,1,4)", [](const V& v) { return ops::mul(v[0], v[1]); },
            {leaf({2, 3, 4}, gen), leaf({2, 1, 4}, gen)});
  gradcheck("div (5,3)/(3)", [](const V& v) { return ops::div(v[0], v[1]); },
            {leaf({5, 3}, gen), leaf({3}, gen, 0.5, 2.0)});
  gradcheck("mul same tensor twice", [](const V& v) { return ops::mul(v[0], v[0]); },
            {leaf({7}, gen)});
  gradcheck("affine", [](const V& v) { return ops::affine(v[0], -2.5, 0.75); },
            {leaf({2, 5}, gen)});
  gradcheck("operators",
            [](const V& v) { return (v[0] + v[1]) * v[0] - v[1] / (v[0] * v[0] + 1.0); },
            {leaf({4, 3}, gen), leaf({3}, gen)});
}

TEST_CASE("gradcheck: unary activations", "[gradcheck]") {
  Generator gen(2);
  using ops::UnaryOp;
  for (UnaryOp op : {UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Exp, UnaryOp::Log,
                     UnaryOp::Sqrt, UnaryOp::Neg, UnaryOp::Square, UnaryOp::Silu, UnaryOp::Abs}) {
    const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt;
    Tensor x = leaf({3, 7}, gen, positive ? 0.2 : -2.0, 2.0);
    if (op == UnaryOp::Relu || op == UnaryOp::Abs) {
      // Keep away from the kink at 0 where the derivative jumps.
      double* d = x.data<double>();
      for (int64_t i = 0; i < x.numel(); ++i)
        if (std::abs(d[i]) < 0.05) d[i] = 0.5;
    }
    gradcheck("unary op " + std::to_string(int(op)),
              [op](const V& v) { return ops::unary(op, v[0]); }, {x});
  }
}

TEST_CASE("gradcheck: reductions", "[gradcheck]") {
  Generator gen(3);
  gradcheck("sum all", [](const V& v) { return ops::sum(v[0]); }, {leaf({2, 3, 4}, gen)});
  gradcheck("sum {1}", [](const V& v) { return ops::sum(v[0], {1}); }, {leaf({2, 3, 4}, gen)});
  gradcheck("sum {0,2} keepdim",
            [](const V& v) {
              return ops::sum(v[0], {0, 2}, true);
            },
            {leaf({2, 3, 4}, gen)});
  gradcheck("sum {-1}", [](const V& v) { return ops::sum(v[0], {-1}); }, {leaf({5, 6}, gen)});
  gradcheck("mean {0,1}",
            [](const V& v) {
              return ops::mean(v[0], {0, 1});
            },
            {leaf({3, 2, 5}, gen)});
  gradcheck("mean all", [](const V& v) { return ops::mean(v[0]); }, {leaf({4, 4}, gen)});
}

TEST_CASE("gradcheck: views and copies", "[gradcheck]") {
  Generator gen(4);
  gradcheck("reshape",
            [](const V& v) {
              return ops::square(v[0].reshape({6, -1}));
            },
            {leaf({2, 3, 4}, gen)});
  gradcheck("permute + contiguous",
            [](const V& v) {
              return ops::square(v[0].permute({2, 0, 1}).contiguous());
            },
            {leaf({2, 3, 4}, gen)});
  gradcheck("transpose", [](const V& v) { return ops::mul(v[0].transpose(0, 1), v[1]); },
            {leaf({3, 4}, gen), leaf({4, 3}, gen)});
  gradcheck("slice", [](const V& v) { return ops::square(v[0].slice(1, 1, 3)); },
            {leaf({3, 5}, gen)});
  gradcheck("slice with step", [](const V& v) { return ops::square(v[0].slice(0, 1, 7, 3)); },
            {leaf({8, 2}, gen)});
  gradcheck("flatten", [](const V& v) { return ops::exp(v[0].flatten(1)); },
            {leaf({2, 2, 3}, gen)});
  gradcheck("clone", [](const V& v) { return ops::mul(v[0].clone(), v[0]); }, {leaf({5}, gen)});
  gradcheck("expand",
            [](const V& v) {
              return ops::mul(ops::expand(v[0], {3, 4}), v[1]);
            },
            {leaf({1, 4}, gen), leaf({3, 4}, gen)});
}

TEST_CASE("gradcheck: matmul and linear", "[gradcheck]") {
  Generator gen(5);
  gradcheck("matmul 2-D", [](const V& v) { return ops::matmul(v[0], v[1]); },
            {leaf({3, 5}, gen), leaf({5, 4}, gen)});
  gradcheck("matmul transposed operands",
            [](const V& v) { return ops::matmul(v[0].transpose(0, 1), v[1].transpose(0, 1)); },
            {leaf({5, 3}, gen), leaf({4, 5}, gen)});
  gradcheck("matmul batched", [](const V& v) { return ops::matmul(v[0], v[1]); },
            {leaf({2, 3, 4}, gen), leaf({2, 4, 2}, gen)});
  gradcheck("linear with bias", [](const V& v) { return ops::linear(v[0], v[1], v[2]); },
            {leaf({4, 6}, gen), leaf({3, 6}, gen), leaf({3}, gen)});
  gradcheck("linear without bias", [](const V& v) { return ops::linear(v[0], v[1], Tensor()); },
            {leaf({2, 5}, gen), leaf({7, 5}, gen)});
}

TEST_CASE("gradcheck: conv2d and im2col", "[gradcheck]") {
  Generator gen(6);
  struct Case {
    int64_t n, c, h, w, o, k, stride, pad, dil, groups;
    bool bias;
  };
  const Case cases[] = {
      {2, 3, 5, 5, 4, 3, 1, 1, 1, 1, true},   // plain 3x3 same padding
      {1, 2, 6, 7, 3, 3, 2, 0, 1, 1, false},  // stride 2, odd width
      {1, 2, 7, 7, 2, 3, 1, 2, 2, 1, true},   // dilation 2
      {2, 4, 5, 4, 6, 3, 1, 1, 1, 2, true},   // groups 2
      {1, 3, 5, 5, 3, 3, 2, 1, 1, 3, false},  // depthwise, stride 2
      {2, 3, 4, 4, 5, 1, 2, 0, 1, 1, true},   // 1x1 stride 2
  };
  for (const Case& c : cases) {
    ops::Conv2dParams p;
    p.stride = c.stride, p.padding = c.pad, p.dilation = c.dil, p.groups = c.groups;
    const std::string name = "conv2d n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " +
                             std::to_string(c.h) + "x" + std::to_string(c.w) + " o" +
                             std::to_string(c.o) + " k" + std::to_string(c.k) + " s" +
                             std::to_string(c.stride) + " p" + std::to_string(c.pad) + " d" +
                             std::to_string(c.dil) + " g" + std::to_string(c.groups);
    V in;
    in.reserve(3);
    in.push_back(leaf({c.n, c.c, c.h, c.w}, gen));
    in.push_back(leaf({c.o, c.c / c.groups, c.k, c.k}, gen));
    if (c.bias) in.push_back(leaf({c.o}, gen));
    gradcheck(
        name,
        [p](const V& v) { return ops::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), p); }, in);
  }
  ops::Conv2dParams p;
  p.stride = 2, p.padding = 1, p.dilation = 1;
  gradcheck("im2col 3x3 s2 p1", [p](const V& v) { return ops::im2col(v[0], 3, 3, p); },
            {leaf({2, 2, 5, 6}, gen)});
}

TEST_CASE("gradcheck: losses", "[gradcheck]") {
  Generator gen(7);
  Tensor labels = Tensor::from_vector<int64_t>({0, 3, 2, 3, 1}, {5});
  gradcheck("cross entropy", [labels](const V& v) { return ops::cross_entropy(v[0], labels); },
            {leaf({5, 4}, gen, -3, 3)});
  gradcheck("L2 loss", [labels](const V& v) { return ops::l2_loss(v[0], labels); },
            {leaf({5, 4}, gen)});
}

TEST_CASE("gradcheck: batch norm", "[gradcheck]") {
  Generator gen(8);
  for (bool training : {true, false}) {
    for (bool affine : {true, false}) {
      Tensor rm = uniform_tensor({3}, -0.5, 0.5, gen, DType::F64);
      Tensor rv = uniform_tensor({3}, 0.5, 1.5, gen, DType::F64);
      auto f = [=](const V& v) {
        // Fresh running buffers per call so the check's repeated forwards see the same state.
        Tensor m = rm.clone(), var = rv.clone();
        return ops::batch_norm(v[0], affine ? v[1] : Tensor(), affine ? v[2] : Tensor(), m, var,
                               training, 0.1, 1e-5);
      };
      const std::string name =
          std::string("batch_norm ") + (training ? "train" : "eval") + (affine ? " affine" : "");
      auto inputs = [&](const Shape& x_shape) {
        V v{leaf(x_shape, gen), leaf({3}, gen), leaf({3}, gen)};
        for (size_t i = 1; i < v.size() && !affine; ++i) v[i].set_requires_grad(false);
        return v;
      };
      gradcheck(name + " (N,C)", f, inputs({6, 3}));
      gradcheck(name + " (N,C,H,W)", f, inputs({2, 3, 2, 3}));
    }
  }
}
