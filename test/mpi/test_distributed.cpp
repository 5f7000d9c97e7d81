// Multi-rank tests (mpirun -np 2): the collectives, the differentiable all-reduce, every layer
// with batch statistics against the single-process run on the whole batch (outputs, input and
// parameter gradients, running buffers; --sync-stats off must differ), and the bucketed gradient
// reducer. Every check is a CHECK, never a REQUIRE: a rank that stopped early would leave the
// other waiting in a collective.
#include <cmath>
#include <functional>
#include <memory>
#include <sstream>

#include "engine/comm.h"
#include "engine/grad_reducer.h"
#include "layers/batchnorm.h"
#include "layers/deconv.h"
#include "layers/linear.h"
#include "test/catch.h"

using namespace nd;

namespace {

// max |a - b| / (1 + max |b|): a relative error that tolerates values near zero.
double rel_err(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return INFINITY;
  const auto va = a.detach().to_vector<double>(), vb = b.detach().to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    diff = std::max(diff, std::abs(va[i] - vb[i]));
    scale = std::max(scale, std::abs(vb[i]));
  }
  return std::isnan(diff) ? INFINITY : diff / (1.0 + scale);
}

// Rows [begin, end) of this rank when `total` rows are split unevenly: rank 0 takes one more.
std::pair<int64_t, int64_t> my_rows(int64_t total) {
  const int64_t p = comm::world_size(), r = comm::rank();
  const int64_t base = total / p, extra = total % p;
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

struct Result {
  Tensor y, dx;
  std::vector<Tensor> grads, buffers;
};

// Forward in training mode + backward of sum(r * y) over the given rows.
Result run(Module& m, const Tensor& x_rows, const Tensor& r_rows) {
  Tensor x = x_rows.detach().clone();
  x.set_requires_grad(true);
  m.zero_grad();
  Tensor y = m(x);
  ops::sum(ops::mul(y, r_rows)).backward();
  Result out{y.detach(), x.grad(), {}, {}};
  for (const Tensor& p : m.parameters()) out.grads.push_back(p.grad());
  for (auto& [name, b] : m.named_buffers()) out.buffers.push_back(b.detach().clone());
  return out;
}

// The layer on the whole batch in one process (computed on every rank) against the ranks on
// their rows with statistics synchronised, for two training steps (running buffers updated
// twice). Returns the largest relative error of the unsynchronised run's outputs.
double check_against_one_process(const std::string& what,
                                 const std::function<std::shared_ptr<Module>()>& make,
                                 const Shape& x_shape) {
  INFO(what << " on " << comm::where());
  Generator gen(42);
  Tensor x = normal_tensor(x_shape, 0.3, 1.0, gen, DType::F64);
  auto [begin, end] = my_rows(x_shape[0]);
  std::shared_ptr<Module> whole = make(), mine = make(), unsynced = make(), probe = make();
  for (Module* m : {whole.get(), mine.get(), unsynced.get(), probe.get()}) m->to(DType::F64);
  Shape y_shape;
  {
    NoGradGuard no_grad;
    probe->eval();
    y_shape = (*probe)(x).shape();
  }
  double unsynced_err = 0;
  for (int step = 0; step < 2; ++step) {
    Generator rgen(7 + uint64_t(step));
    Tensor r = normal_tensor(y_shape, 0, 1, rgen, DType::F64);
    Tensor x_mine = x.slice(0, begin, end).contiguous();
    Tensor r_mine = r.slice(0, begin, end).contiguous();
    comm::set_sync_statistics(false);
    const Result ref = run(*whole, x, r);
    const Result off = run(*unsynced, x_mine, r_mine);
    comm::set_sync_statistics(true);
    const Result got = run(*mine, x_mine, r_mine);
    INFO("step " << step);
    const double tol = 1e-9;
    CHECK(rel_err(got.y, ref.y.slice(0, begin, end)) < tol);
    CHECK(rel_err(got.dx, ref.dx.slice(0, begin, end)) < tol);
    CHECK(got.grads.size() == ref.grads.size());
    for (size_t i = 0; i < got.grads.size() && i < ref.grads.size(); ++i) {
      Tensor total = got.grads[i].clone();
      comm::all_reduce_sum_(total);
      INFO("parameter " << i);
      CHECK(rel_err(total, ref.grads[i]) < tol);
    }
    for (size_t i = 0; i < got.buffers.size(); ++i) {
      INFO("buffer " << i);
      CHECK(rel_err(got.buffers[i], ref.buffers[i]) < tol);
    }
    unsynced_err = std::max(unsynced_err, rel_err(off.y, ref.y.slice(0, begin, end)));
  }
  return unsynced_err;
}

DeconvSettings settings(DeconvPath path, int64_t block, double eps = 1e-5) {
  DeconvSettings s;
  s.block = block;
  s.eps = eps;
  s.path = path;
  return s;
}

}  // namespace

TEST_CASE("collectives: sums, broadcast, prefix sums, agreement", "[mpi]") {
  const int r = comm::rank(), p = comm::world_size();
  Tensor t = Tensor::full({3}, double(r + 1), DType::F64);
  comm::all_reduce_sum_(t);
  CHECK(t.to_vector<double>() == std::vector<double>(3, p * (p + 1) / 2.0));
  Tensor f = Tensor::full({2, 2}, float(r + 1));
  comm::all_reduce_sum_(f, comm::Channel::Gradients);
  CHECK(f.to_vector<float>() == std::vector<float>(4, float(p * (p + 1) / 2)));
  Tensor b = Tensor::full({4}, double(r == 0 ? 5 : -1), DType::F64);
  comm::broadcast_(b);
  CHECK(b.to_vector<double>() == std::vector<double>(4, 5.0));
  CHECK(comm::exclusive_prefix_sum(10) == 10 * r);
  CHECK(comm::all_reduce_sum(int64_t(r)) == int64_t(p) * (p - 1) / 2);
  CHECK(comm::all_reduce_max(int64_t(r)) == p - 1);
  CHECK(comm::same_on_all_ranks(12345));
  CHECK_FALSE(comm::same_on_all_ranks(uint64_t(r)));
  Tensor a = Tensor::full({5}, 1.0 + r, DType::F64);
  auto pending = comm::start_all_reduce_sum(a, comm::Channel::Gradients);
  pending->wait();
  CHECK(a.to_vector<double>() == std::vector<double>(5, p * (p + 1) / 2.0));
}

TEST_CASE("the differentiable all-reduce sends back the sum of every rank's gradient", "[mpi]") {
  const int r = comm::rank(), p = comm::world_size();
  Tensor x = Tensor::full({2}, double(r), DType::F64);
  x.set_requires_grad(true);
  Tensor y = comm::all_reduce_sum(x);
  CHECK(y.to_vector<double>() == std::vector<double>(2, p * (p - 1) / 2.0));
  // Rank r's loss is (r + 1) * sum(y): dL/dx = sum over ranks of (q + 1) on every rank.
  ops::sum(ops::affine(y, double(r + 1), 0.0)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>(2, p * (p + 1) / 2.0));
}

TEST_CASE("synchronised statistics equal the single-process run on the whole batch", "[mpi]") {
  for (DeconvPath path : {DeconvPath::Fused, DeconvPath::Composite}) {
    const std::string tag = path == DeconvPath::Fused ? " (fused)" : " (composite)";
    ops::Conv2dParams p3;
    p3.padding = 1;
    double off = check_against_one_process("FastDeconv 3x3" + tag,
                                           [&] {
                                             Generator g(3);
                                             return std::make_shared<FastDeconv>(
                                                 4, 3, 3, p3, true, settings(path, 2), g);
                                           },
                                           {5, 4, 6, 6});
    CHECK(off > 1e-6);  // without synchronisation each rank whitens with its own batch
    ops::Conv2dParams p1;
    // 1x1 at sampling stride 3: rank 1 starts at raster row 3 * 7 * 7 = 147, inside the pattern.
    off = check_against_one_process("FastDeconv 1x1" + tag,
                                    [&] {
                                      Generator g(4);
                                      return std::make_shared<FastDeconv>(6, 5, 1, p1, true,
                                                                          settings(path, 3), g);
                                    },
                                    {5, 6, 7, 7});
    CHECK(off > 1e-6);
    ops::Conv2dParams pg;
    pg.padding = 1, pg.groups = 2, pg.stride = 2;
    check_against_one_process("FastDeconv grouped, stride 2" + tag,
                              [&] {
                                Generator g(5);
                                return std::make_shared<FastDeconv>(4, 4, 3, pg, false,
                                                                    settings(path, 2), g);
                              },
                              {5, 4, 9, 9});
    off = check_against_one_process("Delinear" + tag,
                                    [&] {
                                      Generator g(6);
                                      return std::make_shared<Delinear>(12, 5, true,
                                                                        settings(path, 4), g);
                                    },
                                    {7, 12});
    CHECK(off > 1e-6);
    // 70 channels of block 32: two whitened blocks and 6 leftover standardised channels.
    off = check_against_one_process(
        "ChannelDeconv with leftover channels" + tag,
        [&] { return std::make_shared<ChannelDeconv>(32, settings(path, 32, 1e-2)); }, {9, 70});
    CHECK(off > 1e-6);
    check_against_one_process("ChannelDeconv, reference's uncentred covariance" + tag,
                              [&] {
                                return std::make_shared<ChannelDeconv>(8, settings(path, 8, 1e-2),
                                                                       /*centred=*/false);
                              },
                              {9, 16});
  }
  double off = check_against_one_process(
      "BatchNorm2d", [] { return std::make_shared<BatchNorm2d>(3); }, {5, 3, 4, 4});
  CHECK(off > 1e-6);
  check_against_one_process("BatchNorm1d", [] { return std::make_shared<BatchNorm1d>(6); }, {7, 6});
}

TEST_CASE("gradient buckets start during backward and average every gradient", "[mpi]") {
  const int r = comm::rank(), p = comm::world_size();
  Generator gen(9);
  Sequential net;
  net.push_back(std::make_shared<Linear>(8, 16, true, gen));
  net.push_back(std::make_shared<Linear>(16, 16, true, gen));
  net.push_back(std::make_shared<Linear>(16, 4, true, gen));
  // In the reducer but never in the graph; first, so in the last bucket (buckets start in
  // order, and one that backward never completes waits for finish()).
  auto unused = std::make_shared<Linear>(4, 4, true, gen);
  std::vector<Tensor> params = unused->parameters();
  for (const Tensor& t : net.parameters()) params.push_back(t);
  // Small buckets: several per step.
  GradientReducer reducer(params, 600);
  CHECK(reducer.num_buckets() >= 3);
  Generator xg(100 + uint64_t(r));  // each rank its own data
  Tensor x = normal_tensor({3, 8}, 0, 1, xg);
  net.zero_grad();
  Tensor loss = ops::sum(ops::square(net(x)));
  reducer.begin();
  loss.backward();
  const std::vector<Tensor> local_params = net.parameters();
  std::vector<Tensor> expected;
  for (const Tensor& t : local_params) {
    Tensor g = t.grad().clone();
    expected.push_back(g);
  }
  // (the reducer's work on the flat buffers does not touch .grad until finish)
  for (Tensor& g : expected) {
    comm::all_reduce_sum_(g);
    g = ops::affine(g, 1.0 / p, 0.0);
  }
  reducer.finish(1.0 / p);
  // The buckets of the last two layers start inside backward; the one holding the first layer
  // and part of the unused one only at finish().
  CHECK(reducer.started_during_backward() >= 2);
  CHECK(reducer.started_during_backward() < reducer.num_buckets());
  for (size_t i = 0; i < local_params.size(); ++i) {
    INFO("parameter " << i);
    CHECK(rel_err(local_params[i].grad(), expected[i]) < 1e-6);
  }
  for (const Tensor& t : unused->parameters()) CHECK_FALSE(t.grad().defined());
  CHECK(reducer.bytes_per_step() ==
        int64_t(sizeof(float)) * (8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4 + 4 * 4 + 4));
}
