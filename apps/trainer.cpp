// The training loop behind nd-train (see trainer.h).
#include "apps/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>

#include "data/batch.h"
#include "data/fashion_mnist.h"
#include "engine/optim.h"
#include "nets/registry.h"

namespace nd {

namespace {

using Clock = std::chrono::steady_clock;

void require_one_of(const char* flag, const std::string& value,
                    std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += list.empty() ? a : std::string("|") + a;
  }
  ND_FAIL(flag, " '", value, "' is not one of ", list);
}

std::string default_data_dir(const std::string& dataset) {
  return dataset == "mnist" ? "/usr/share/datasets/mnist" : "/usr/share/datasets/fashion-mnist";
}

std::string default_output(const TrainConfig& cfg) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return "runs/" + std::string(stamp) + "-" + cfg.arch + "-" + cfg.norm;
}

struct EvalResult {
  double loss = 0, top1 = 0;
};

EvalResult evaluate(Module& net, const data::ImageClassSet& set, int64_t batch_size,
                    kernels::LossKind loss_kind, Device device) {
  NoGradGuard no_grad;
  net.eval();
  data::BatchIterator it(set, batch_size, false, nullptr);
  data::Batch b;
  double loss_sum = 0;
  int64_t correct = 0;
  while (it.next(b)) {
    Tensor logits = net(b.images.to(device));
    loss_sum += ops::loss(loss_kind, logits, b.labels).item() * double(b.labels.numel());
    correct += ops::count_correct(logits, b.labels);
  }
  net.train();
  return {loss_sum / double(set.count), 100.0 * double(correct) / double(set.count)};
}

}  // namespace

void validate(const TrainConfig& cfg) {
  require_one_of("--dataset", cfg.dataset, {"fashion-mnist", "mnist"});
  require_one_of("--norm", cfg.norm, {"none", "bn", "nd"});
  require_one_of("--loss", cfg.loss, {"CE", "L2"});
  require_one_of("--optimizer", cfg.optimizer, {"sgd", "adam"});
  require_one_of("--lr-scheduler", cfg.lr_scheduler, {"cosine", "multistep"});
  require_one_of("--deconv-path", cfg.deconv_path, {"fused", "composite"});
  ND_CHECK(cfg.epochs >= 1, "--epochs must be at least 1, got ", cfg.epochs);
  ND_CHECK(cfg.batch_size >= 1, "--batch-size must be at least 1, got ", cfg.batch_size);
  ND_CHECK(cfg.lr > 0 && std::isfinite(cfg.lr), "--lr must be positive, got ", cfg.lr);
  ND_CHECK(cfg.momentum >= 0 && cfg.momentum < 1, "--momentum must be in [0, 1), got ",
           cfg.momentum);
  ND_CHECK(cfg.weight_decay >= 0, "--wd must be >= 0, got ", cfg.weight_decay);
  ND_CHECK(cfg.train_limit >= 0 && cfg.test_limit >= 0, "limits must be >= 0");
}

TrainResult train(const TrainConfig& cfg, std::ostream& log) {
  validate(cfg);
  const Device device = parse_device(cfg.device);
  const kernels::LossKind loss_kind =
      cfg.loss == "CE" ? kernels::LossKind::CrossEntropy : kernels::LossKind::L2;

  const std::string dir = cfg.data_dir.empty() ? default_data_dir(cfg.dataset) : cfg.data_dir;
  data::ImageClassSet train_set = data::load_mnist_split(dir, true);
  data::ImageClassSet test_set = data::load_mnist_split(dir, false);
  if (cfg.train_limit > 0 && cfg.train_limit < train_set.count)
    train_set = data::take_first(train_set, cfg.train_limit);
  if (cfg.test_limit > 0 && cfg.test_limit < test_set.count)
    test_set = data::take_first(test_set, cfg.test_limit);

  Generator init_gen(cfg.seed);
  NetConfig net_cfg;
  net_cfg.arch = cfg.arch;
  net_cfg.norm = cfg.norm;
  net_cfg.num_classes = train_set.num_classes;
  net_cfg.in_channels = train_set.channels;
  net_cfg.height = train_set.height;
  net_cfg.width = train_set.width;
  net_cfg.ref_compat = cfg.ref_compat;
  net_cfg.deconv_path = cfg.deconv_path == "fused" ? DeconvPath::Fused : DeconvPath::Composite;
  std::shared_ptr<Module> net = build_net(net_cfg, init_gen);
  net->to(device);
  net->train();

  std::unique_ptr<Optimizer> opt;
  if (cfg.optimizer == "sgd")
    opt = std::make_unique<Sgd>(net->parameters(), cfg.lr, cfg.momentum, cfg.weight_decay);
  else
    opt = std::make_unique<Adam>(net->parameters(), cfg.lr, cfg.weight_decay);

  TrainResult result;
  result.output_dir = cfg.output.empty() ? default_output(cfg) : cfg.output;
  std::ofstream csv, steps_csv;
  if (cfg.write_files) {
    std::filesystem::create_directories(result.output_dir);
    const std::string path = result.output_dir + "/summary.csv";
    csv.open(path);
    ND_CHECK(csv, "cannot write ", path);
    csv << "epoch,lr,train_loss,train_top1,test_loss,test_top1,seconds,images_per_s\n";
    // Every step's loss: the learning curves of the paper's Fashion-MNIST figure.
    steps_csv.open(result.output_dir + "/steps.csv");
    ND_CHECK(steps_csv, "cannot write ", result.output_dir, "/steps.csv");
    steps_csv << "step,epoch,lr,loss\n";
  }
  const bool progress = cfg.progress == 1 || (cfg.progress == -1 && isatty(STDOUT_FILENO));
  log << "nd-train: " << cfg.arch << " norm=" << cfg.norm << " on " << cfg.dataset << " ("
      << train_set.count << " train / " << test_set.count << " test images), device "
      << device.str() << ", " << net->num_parameters() << " parameters\n";

  Generator shuffle_gen(cfg.seed ^ 0x5eed5eed5eedULL);
  const int64_t steps_per_epoch = (train_set.count + cfg.batch_size - 1) / cfg.batch_size;
  const int64_t total_steps = steps_per_epoch * cfg.epochs;
  const std::vector<int64_t> milestones{int64_t(0.4 * double(cfg.epochs)),
                                        int64_t(0.8 * double(cfg.epochs))};
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < cfg.epochs; ++epoch) {
    const auto t0 = Clock::now();
    data::BatchIterator it(train_set, cfg.batch_size, true, &shuffle_gen);
    data::Batch b;
    double loss_sum = 0, epoch_lr = 0;
    int64_t correct = 0, seen = 0, batch_index = 0;
    while (it.next(b)) {
      const double lr = cfg.lr_scheduler == "cosine" ? cosine_lr(cfg.lr, step, total_steps)
                                                     : multistep_lr(cfg.lr, epoch, milestones, 0.1);
      if (batch_index == 0) epoch_lr = lr;
      opt->set_lr(lr);
      Tensor images = b.images.to(device);
      Tensor logits = (*net)(images);
      Tensor loss = ops::loss(loss_kind, logits, b.labels);
      const double loss_value = loss.item();
      if (!std::isfinite(loss_value))
        ND_FAIL("training diverged: loss is ", loss_value, " at epoch ", epoch + 1, " step ",
                batch_index + 1, "; lower --lr (now ", cfg.lr, ") or check the data");
      opt->zero_grad();
      loss.backward();
      opt->step();
      const int64_t n = b.labels.numel();
      loss_sum += loss_value * double(n);
      correct += ops::count_correct(logits, b.labels);
      seen += n;
      result.step_losses.push_back(loss_value);
      if (steps_csv.is_open())
        steps_csv << step + 1 << "," << epoch + 1 << "," << lr << "," << loss_value << "\n";
      ++step;
      ++batch_index;
      if (progress && (batch_index % 10 == 0 || batch_index == it.num_batches()))
        std::cout << "\repoch " << epoch + 1 << "/" << cfg.epochs << " [" << batch_index << "/"
                  << it.num_batches() << "] loss " << std::fixed << std::setprecision(4)
                  << loss_sum / double(seen) << std::flush;
    }
    const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const EvalResult test = evaluate(*net, test_set, cfg.batch_size, loss_kind, device);
    EpochStats s;
    s.epoch = epoch + 1;
    s.lr = epoch_lr;
    s.train_loss = loss_sum / double(seen);
    s.train_top1 = 100.0 * double(correct) / double(seen);
    s.test_loss = test.loss;
    s.test_top1 = test.top1;
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    s.images_per_s = double(seen) / train_seconds;
    result.epochs.push_back(s);
    if (progress) std::cout << "\r\033[K" << std::flush;
    log << std::fixed << "epoch " << std::setw(3) << s.epoch << "  lr " << std::setprecision(5)
        << s.lr << "  train loss " << std::setprecision(4) << s.train_loss << "  top1 "
        << std::setprecision(2) << s.train_top1 << "%  test loss " << std::setprecision(4)
        << s.test_loss << "  top1 " << std::setprecision(2) << s.test_top1 << "%  "
        << std::setprecision(2) << s.seconds << " s  " << std::setprecision(0) << s.images_per_s
        << " img/s" << std::endl;
    if (csv.is_open()) {
      csv << std::fixed << s.epoch << "," << std::setprecision(8) << s.lr << "," << s.train_loss
          << "," << s.train_top1 << "," << s.test_loss << "," << s.test_top1 << "," << s.seconds
          << "," << std::setprecision(1) << s.images_per_s << "\n"
          << std::flush;
    }
  }
  for (auto& [name, t] : net->state_dict())
    result.final_state[name] = t.detach().to(Device::cpu()).clone();
  return result;
}

}  // namespace nd
