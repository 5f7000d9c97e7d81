// The CIFAR and ImageNet networks against the reference tables (test/reference): every
// parameter and buffer name and shape in state_dict order, every deconvolution layer's
// settings, the modules left besides them, parameter counts at 10/100 (CIFAR) and 1000
// (ImageNet) classes; then forward shapes, the model summary, and one SGD step on the CPU that
// reaches every parameter and lowers the loss on a fixed tiny batch.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/optim.h"
#include "layers/conv.h"
#include "layers/deconv.h"
#include "layers/dropout.h"
#include "nets/summary.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/net_tables.h"

using namespace nd;
using namespace nd::test;

namespace {

std::shared_ptr<Module> build(const NetCase& c, int64_t classes, uint64_t seed = 0) {
  Generator gen(seed);
  return build_net(net_config(c, classes), gen);
}

std::string state_line(const std::string& name, const Tensor& t, bool param) {
  std::string shape = "scalar";
  if (t.dim() > 0) {
    shape.clear();
    for (int64_t d : t.shape()) shape += (shape.empty() ? "" : "x") + std::to_string(d);
  }
  return name + "\t" + (param ? "param" : "buffer") + "\t" + shape;
}

// Our state_dict, in order, against state_dicts/<table>_<norm>.tsv.
void check_state_dict(const NetCase& c, Module& net) {
  const std::string path = reference_dir() + "/state_dicts/" + c.table + "_" + c.norm + ".tsv";
  std::vector<std::string> want, got;
  for (const auto& r : read_tsv(path)) want.push_back(r[0] + "\t" + r[1] + "\t" + r[2]);
  for (const auto& [name, tp] : net.ordered_state())
    got.push_back(state_line(name, tp.first, tp.second));
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  INFO(path << ": " << want.size() << " reference entries, " << got.size() << " ours");
  INFO("first difference at entry " << i << ": reference '" << (i < want.size() ? want[i] : "(end)")
                                    << "', ours '" << (i < got.size() ? got[i] : "(end)") << "'");
  CHECK(got == want);
}

std::string fmt_eps(double eps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", eps);
  return buf;
}

// One nd_layers row for a FastDeconv or Delinear, formatted as the table.
std::string deconv_row(const std::string& name, Module& m) {
  std::ostringstream s;
  if (auto* d = dynamic_cast<FastDeconv*>(&m)) {
    const auto& p = d->params();
    const auto& st = d->settings();
    s << name << "\tFastDeconv\t" << d->in_channels() << "\t" << d->out_channels() << "\t"
      << d->kernel() << "\t" << p.stride << "\t" << p.padding << "\t" << p.dilation << "\t"
      << p.groups << "\t" << d->block() << "\t" << st.n_iter << "\t" << fmt_eps(st.eps) << "\t"
      << d->effective_sampling_stride() << "\t" << (st.freeze ? "True" : "False") << "\t"
      << st.freeze_iter;
  } else if (auto* l = dynamic_cast<Delinear*>(&m)) {
    s << name << "\tDelinear\t" << l->in_features() << "\t" << l->out_features()
      << "\t-\t-\t-\t-\t-\t" << l->block() << "\t" << l->settings().n_iter << "\t"
      << fmt_eps(l->settings().eps) << "\t-\t-\t-";
  }
  return s.str();
}

// Deconvolution settings and the other modules against nd_layers/<table>.tsv.
void check_nd_layers(const NetCase& c, Module& net) {
  const std::string path = reference_dir() + "/nd_layers/" + c.table + ".tsv";
  std::vector<std::string> comments;
  std::vector<std::string> want, got;
  for (const auto& r : read_tsv(path, &comments)) {
    std::string line;
    for (const auto& cell : r) line += (line.empty() ? "" : "\t") + cell;
    want.push_back(line);
  }
  std::map<std::string, int> others;
  std::vector<std::string> other_order;
  for (const auto& [name, m] : net.named_modules()) {
    const std::string row = deconv_row(name, *m);
    if (!row.empty()) {
      got.push_back(row);
      continue;
    }
    const std::string type = m->type_name();
    if (type == "Conv2d" || type == "BatchNorm2d" || type == "BatchNorm1d" || type == "Linear" ||
        type == "Dropout") {
      if (!others.count(type)) other_order.push_back(type);
      others[type]++;
    }
  }
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  INFO(path << ": first difference at row " << i << ": reference '"
            << (i < want.size() ? want[i] : "(end)") << "', ours '"
            << (i < got.size() ? got[i] : "(end)") << "'");
  CHECK(got == want);

  std::string others_line = "# other modules still present in the ND model: ";
  if (others.empty()) others_line += "none";
  for (size_t k = 0; k < other_order.size(); ++k)
    others_line += (k ? ", " : "") + other_order[k] + " x" + std::to_string(others[other_order[k]]);
  bool found = false;
  for (const auto& line : comments)
    if (line.rfind("# other modules", 0) == 0) {
      found = true;
      CHECK(others_line == line);
    }
  CHECK(found);
}

void check_reference_tables(const std::string& arch) {
  const auto counts = reference_param_counts();
  std::vector<NetCase> cases = cifar_cases();
  for (const auto& c : imagenet_cases()) cases.push_back(c);
  int matched = 0;
  for (const auto& c : cases) {
    if (c.arch != arch) continue;
    ++matched;
    INFO(c.arch << " --norm " << c.norm << (c.ref_compat ? " --ref-compat" : ""));
    const bool imagenet = c.input == "imagenet";
    for (int64_t classes : imagenet ? std::vector<int64_t>{1000} : std::vector<int64_t>{10, 100}) {
      auto net = build(c, classes);
      const std::string key = c.table + "/" + c.norm + "/" + std::to_string(classes);
      REQUIRE(counts.count(key));
      INFO(classes << " classes");
      CHECK(net->num_parameters() == counts.at(key));
      if (classes != (imagenet ? 1000 : 10)) continue;
      // ImageNet BN networks are torchvision's; there are no tables for them.
      if (imagenet && c.norm == "bn") continue;
      check_state_dict(c, *net);
      if (c.norm == "nd") check_nd_layers(c, *net);
    }
  }
  CHECK(matched > 0);
}

// Every Dropout's generator, so a second forward draws the same masks as the first.
std::vector<std::pair<Dropout*, std::array<uint64_t, 4>>> dropout_states(Module& net) {
  std::vector<std::pair<Dropout*, std::array<uint64_t, 4>>> out;
  for (auto& [name, m] : net.named_modules())
    if (auto* d = dynamic_cast<Dropout*>(m)) out.push_back({d, d->generator().state()});
  return out;
}

void check_training_step(const NetCase& c) {
  INFO(c.arch << " --norm " << c.norm << (c.ref_compat ? " --ref-compat" : ""));
  const bool imagenet = c.input == "imagenet";
  const int64_t classes = imagenet ? 1000 : 10, batch = imagenet ? 2 : 4;
  const int64_t side = imagenet ? 64 : 32;  // ImageNet networks pool adaptively; 64 keeps it quick
  auto net = build(c, classes, 1);
  Generator gen(7);
  Tensor x = normal_tensor({batch, 3, side, side}, 0, 1, gen);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(int64_t(gen.below(uint64_t(classes))));
  Tensor y = Tensor::from_vector(labels, {batch});

  // Summary: a single image, every parameterized layer reached through operator().
  ModelSummary s = summarize(*net, {3, side, side});
  CHECK(s.parameters == net->num_parameters());
  int64_t row_params = 0, unused_params = 0;
  for (const auto& r : s.rows) row_params += r.parameters;
  for (auto& [name, p] : net->named_parameters())
    if (unused_by_reference(c, name)) unused_params += p.numel();
  CHECK(row_params + unused_params == s.parameters);
  REQUIRE(!s.rows.empty());
  CHECK(s.rows.back().output == Shape{1, classes});
  CHECK(s.flops > 0);

  net->train();
  auto dropouts = dropout_states(*net);
  Tensor logits = (*net)(x);
  REQUIRE(logits.shape() == Shape{batch, classes});
  Tensor loss0 = ops::cross_entropy(logits, y);
  const double before = loss0.item();
  REQUIRE(std::isfinite(before));
  loss0.backward();
  for (auto& [name, p] : net->named_parameters()) {
    INFO("parameter " << name);
    if (unused_by_reference(c, name)) {
      CHECK(!p.grad().defined());
      continue;
    }
    REQUIRE(p.grad().defined());
    double sq = 0;
    for (float g : p.grad().to_vector<float>()) sq += double(g) * g;
    CHECK(std::isfinite(sq));
  }
  // A step along the negative gradient lowers the loss once it is small enough; deconvolved
  // networks on a batch of 4 can be steep (MobileNetV2's gradient norm is ~100x ResNet-18's), so
  // lr 0.01 falls back to 1e-3 and 1e-4. A wrong gradient fails all three about half the time.
  NoGradGuard no_grad;
  const auto start = net->state_dict();
  std::map<std::string, Tensor> initial;
  for (auto& [name, t] : start) initial[name] = t.clone();
  double after = before, used_lr = 0;
  for (double lr : {1e-2, 1e-3, 1e-4}) {
    net->load_state_dict(initial);
    Sgd opt(net->parameters(), lr, 0.0, 0.0);
    opt.step();
    for (auto& [d, state] : dropouts) d->generator().set_state(state);
    after = ops::cross_entropy((*net)(x), y).item();
    used_lr = lr;
    if (after < before) break;
  }
  INFO("loss before " << before << ", after one SGD step (lr " << used_lr << ") " << after);
  CHECK(after < before);
}

}  // namespace

#define ND_NET_TESTS(NET)                                                        \
  TEST_CASE("net " #NET ": names, shapes, settings and counts of the reference", \
            "[nets][tables]") {                                                  \
    check_reference_tables(#NET);                                                \
  }                                                                              \
  TEST_CASE("net " #NET ": forward, summary and one SGD step", "[nets][step]") { \
    for (const auto& c : cifar_cases())                                          \
      if (c.arch == #NET) check_training_step(c);                                \
    for (const auto& c : imagenet_cases())                                       \
      if (c.arch == #NET) check_training_step(c);                                \
  }

ND_NET_TESTS(vgg16)
ND_NET_TESTS(resnet18)
ND_NET_TESTS(preact18)
ND_NET_TESTS(densenet121)
ND_NET_TESTS(resnext29_32x4d)
ND_NET_TESTS(mobilenetv2)
ND_NET_TESTS(dpn92)
ND_NET_TESTS(pnasnetA)
ND_NET_TESTS(senet18)
ND_NET_TESTS(efficientnetb0)
ND_NET_TESTS(imagenet_vgg11)
ND_NET_TESTS(imagenet_resnet18)
ND_NET_TESTS(imagenet_densenet121)

TEST_CASE("EfficientNet-B0 deconvolves every convolution unless --ref-compat", "[nets]") {
  NetCase c{"efficientnetb0", "efficientnetb0", "nd", false, "cifar"};
  auto net = build(c, 10);
  int deconvs = 0;
  for (auto& [name, m] : net->named_modules()) {
    INFO(name << " is a " << m->type_name());
    CHECK(m->type_name() != "Conv2d");
    CHECK(m->type_name() != "BatchNorm2d");
    deconvs += m->type_name() == "FastDeconv";
  }
  CHECK(deconvs == 1 + 82);  // the stem and the 82 convolutions the reference leaves plain
  check_training_step(c);
}

TEST_CASE("registry: arch names, ImageNet resolution and errors", "[nets]") {
  CHECK(resolve_arch("resnet18", "imagenet") == "imagenet_resnet18");
  CHECK(resolve_arch("resnet18", "cifar10") == "resnet18");
  CHECK(resolve_arch("imagenet_vgg11", "imagenet") == "imagenet_vgg11");
  Generator gen(0);
  NetConfig cfg;
  cfg.arch = "vgg16";
  cfg.norm = "none";
  check_error_contains([&] { build_net(cfg, gen); }, {"vgg16", "--norm none", "bn, nd"});
  cfg.arch = "resnet19";
  cfg.norm = "bn";
  check_error_contains([&] { build_net(cfg, gen); }, {"resnet19", "densenet121", "pnasnetA"});
  cfg.arch = "resnet18";
  cfg.in_channels = 3;
  cfg.height = cfg.width = 28;
  check_error_contains([&] { build_net(cfg, gen); }, {"resnet18", "3x32x32", "3x28x28"});
}

TEST_CASE("ImageNet batch-norm networks start from torchvision's initialisation", "[nets]") {
  auto stats = [](const Tensor& t) {
    const std::vector<double> v = t.to_vector<double>();
    double mean = 0, sq = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    for (double x : v) sq += (x - mean) * (x - mean);
    return std::make_pair(mean, std::sqrt(sq / double(v.size())));
  };
  auto check_std = [&](Module& net, const std::string& name, double want) {
    INFO(name << ": standard deviation should be " << want);
    const auto [mean, sd] = stats(net.state_dict().at(name));
    CHECK(std::abs(mean) < 0.05 * want);
    CHECK(std::abs(sd - want) < 0.03 * want);
  };
  auto check_zero = [&](Module& net, const std::string& name) {
    INFO(name);
    for (double x : net.state_dict().at(name).to_vector<double>()) REQUIRE(x == 0.0);
  };
  const NetCase resnet{"imagenet_resnet18", "imagenet_resnet18", "bn", false, "imagenet"};
  auto r = build(resnet, 1000);
  check_std(*r, "conv1.weight", std::sqrt(2.0 / (64 * 49)));  // Kaiming, fan_out
  check_std(*r, "layer4.1.conv2.weight", std::sqrt(2.0 / (512 * 9)));
  const NetCase dense{"imagenet_densenet121", "imagenet_densenet121", "bn", false, "imagenet"};
  auto d = build(dense, 1000);
  check_std(*d, "features.conv0.weight", std::sqrt(2.0 / (3 * 49)));  // Kaiming, fan_in
  check_zero(*d, "classifier.bias");
  const NetCase vgg{"imagenet_vgg11", "imagenet_vgg11", "bn", false, "imagenet"};
  auto v = build(vgg, 1000);
  check_std(*v, "features.4.weight", std::sqrt(2.0 / (128 * 9)));
  check_zero(*v, "features.4.bias");
  check_std(*v, "classifier.6.weight", 0.01);
  check_zero(*v, "classifier.0.bias");
}
