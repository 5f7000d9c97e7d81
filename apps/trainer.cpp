// The training loop behind nd-train (see trainer.h).
#include "apps/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>

#include "apps/datasets.h"
#include "apps/distributed.h"
#include "apps/epoch_progress.h"
#include "apps/interrupt.h"
#include "data/loader.h"
#include "engine/comm.h"
#include "engine/cpu_backend.h"
#include "engine/optim.h"
#include "io/atomic_file.h"
#include "nets/summary.h"

namespace nd {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Steps between reads of the losses from the device: each read waits for the device, so they
// are batched; a NaN is caught at the next read, before any checkpoint is written.
constexpr int64_t kStepsPerSync = 20;

std::string default_output(const TrainConfig& cfg) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return "runs/" + std::string(stamp) + "-" + cfg.arch + "-" + cfg.norm;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ND_CHECK(in, "cannot read ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kSummaryHeader =
    "epoch,lr,train_loss,train_top1,test_loss,test_top1,test_top5,seconds,images_per_s\n";

// Throws Interrupted when SIGINT or SIGTERM arrived (checked between steps, so a step and a
// checkpoint write always finish). `where` says what is abandoned.
void stop_if_requested(const std::string& where, const std::string& dir, int64_t epochs_done,
                       bool write_files) {
  const int signal = stop_signal();
  if (signal == 0) return;
  std::string kept = "nothing was saved (no epoch finished)";
  if (write_files && epochs_done > 0)
    kept = "the last checkpoint (epoch " + std::to_string(epochs_done) + ") in " + dir +
           " is complete: continue with nd-train --resume " + dir;
  else if (write_files)
    kept = "no epoch finished; nd-train --resume " + dir + " starts the run again";
  throw Interrupted(signal, "interrupted by " + signal_name(signal) + " " + where + "; " + kept);
}

// The steps.csv rows to keep on resume: complete rows (four fields) of the steps up to the
// checkpoint; a run killed mid-write may have left a partial last row.
std::string kept_step_rows(const std::string& text, int64_t last_step) {
  std::istringstream old(text);
  std::string line, kept;
  std::getline(old, line);  // header
  while (std::getline(old, line)) {
    if (std::count(line.begin(), line.end(), ',') != 3) continue;
    char* end = nullptr;
    const long long step = std::strtoll(line.c_str(), &end, 10);
    if (end != line.c_str() && *end == ',' && step >= 1 && step <= last_step) kept += line + "\n";
  }
  return kept;
}

// Removes temporary files a killed run left behind (`<file>.tmp.<pid>` of AtomicFile).
void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos)
      fs::remove(entry.path(), ec);
}

std::string summary_row(const EpochStats& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld,%.8f,%.6f,%.4f,%.6f,%.4f,%.4f,%.3f,%.1f\n",
                (long long)s.epoch, s.lr, s.train_loss, s.train_top1, s.test_loss, s.test_top1,
                s.test_top5, s.seconds, s.images_per_s);
  return buf;
}

int64_t limited(int64_t size, int64_t limit) {
  return limit > 0 && limit < size ? limit : size;
}

ops::LossKind loss_kind_of(const TrainConfig& cfg) {
  return cfg.loss == "CE" ? ops::LossKind::CrossEntropy : ops::LossKind::L2;
}

data::LoaderOptions loader_options(const TrainConfig& cfg) {
  data::LoaderOptions o;
  o.batch_size = cfg.batch_size;
  o.workers = cfg.workers;
  return o;
}

// `between_batches` runs before each batch (the stop check of a training run).
EvalResult evaluate(Module& net, data::Loader& loader, int64_t count, ops::LossKind loss_kind,
                    Device device, const std::function<void()>& between_batches = {}) {
  NoGradGuard no_grad;
  net.eval();
  const std::vector<int64_t> share = rank_share(count);  // all of them in a world of one
  loader.start(share, 0, share);
  data::Batch b;
  EvalResult r;
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0;
  while (loader.next(b)) {
    if (between_batches) between_batches();
    Tensor logits = net(b.images.to(device));
    const int64_t n = b.labels.numel(), k = logits.shape()[1];
    loss_sum += ops::loss(loss_kind, logits, b.labels.to(device)).item() * double(n);
    const std::vector<float> l = logits.to(Device::cpu()).to_vector<float>();
    const std::vector<int64_t> y = b.labels.to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const float target = l[size_t(i * k + y[size_t(i)])];
      int64_t above = 0;  // classes ranked before the true one
      for (int64_t j = 0; j < k; ++j) {
        const float v = l[size_t(i * k + j)];
        above += v > target || (v == target && j < y[size_t(i)]);
      }
      top1 += above == 0;
      top5 += above < 5;
    }
    r.images += n;
  }
  net.train();
  if (comm::active()) {
    std::vector<double> totals{loss_sum, double(top1), double(top5), double(r.images)};
    all_reduce_totals(totals);
    loss_sum = totals[0], top1 = int64_t(totals[1]), top5 = int64_t(totals[2]);
    r.images = int64_t(totals[3]);
  }
  ND_CHECK(r.images > 0, "the test split is empty");
  r.loss = loss_sum / double(r.images);
  r.top1 = 100.0 * double(top1) / double(r.images);
  r.top5 = 100.0 * double(top5) / double(r.images);
  return r;
}

std::shared_ptr<Module> build_for(const TrainConfig& cfg, const data::Dataset& data) {
  const Shape s = data.sample_shape();
  Generator init_gen(cfg.seed);
  return build_net(net_config(cfg, s[0], s[1], s[2], data.num_classes()), init_gen);
}

// Steps whose loss and predictions still sit on the device.
struct PendingStep {
  int64_t step, epoch;
  double lr;
  Tensor loss, predictions, labels;
};

}  // namespace

std::string epoch_line(const EpochStats& s) {
  std::ostringstream os;
  os << std::fixed << "epoch " << std::setw(3) << s.epoch << "  lr " << std::setprecision(5) << s.lr
     << "  train loss " << std::setprecision(4) << s.train_loss << "  top1 " << std::setprecision(2)
     << s.train_top1 << "%  test loss " << std::setprecision(4) << s.test_loss
     << (std::isfinite(s.test_loss) ? "" : " (not finite)") << "  top1 " << std::setprecision(2)
     << s.test_top1 << "%  top5 " << s.test_top5 << "%  " << s.seconds << " s  "
     << std::setprecision(0) << s.images_per_s << " img/s";
  return os.str();
}

TrainConfig resume_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  ND_CHECK(fs::exists(path), "cannot resume: ", path, " does not exist");
  return config_from_json(read_file(path), path);
}

TrainResult train(const TrainConfig& cfg, std::ostream& log, const std::string& resume_dir) {
  validate(cfg);
  const Device device = rank_device(cfg.device);
  set_gpu_math({cfg.tf32, cfg.deterministic});
  set_cpu_threads(cfg.threads > 0 ? cfg.threads : default_cpu_threads());
  const ops::LossKind loss_kind = loss_kind_of(cfg);
  const bool resuming = !resume_dir.empty();
  const bool write_files = cfg.write_files && comm::is_root();  // rank 0 keeps the run directory

  DataSplits data = load_splits(cfg, true, true);
  const int64_t train_count = limited(data.train->size(), cfg.train_limit);
  const int64_t test_count = limited(data.test->size(), cfg.test_limit);
  std::shared_ptr<Module> net = build_for(cfg, *data.train);

  TrainResult result;
  result.output_dir = resuming ? resume_dir : cfg.output.empty() ? default_output(cfg) : cfg.output;
  const std::string dir = result.output_dir;
  // A run killed before its first checkpoint has only config.json: it starts again.
  const bool has_checkpoint =
      fs::exists(dir + "/training_state.safetensors") || fs::exists(dir + "/last.safetensors");
  TrainConfig saved_cfg = cfg;  // what config.json records: the flags and the init weights' digest
  // A resumed run with a checkpoint continues from it; otherwise --init-weights is read now.
  const bool loads_init_weights = !cfg.init_weights.empty() && !(resuming && has_checkpoint);
  if (loads_init_weights) {
    // Before anything is written: a file that does not fit leaves no run directory behind.
    const std::string digest = load_init_weights(cfg.init_weights, cfg.init_skip, *net);
    ND_CHECK(cfg.init_weights_sha256.empty() || digest == cfg.init_weights_sha256,
             "--init-weights ", cfg.init_weights, " has changed since the run in ", dir,
             " started (sha256 ", digest, ", config.json records ", cfg.init_weights_sha256,
             "); restore that file or start a new run");
    saved_cfg.init_weights = fs::absolute(cfg.init_weights).string();  // resumable from anywhere
    saved_cfg.init_weights_sha256 = digest;
  }
  net->to(device);
  net->train();

  std::unique_ptr<Optimizer> opt;
  if (cfg.optimizer == "sgd")
    opt = std::make_unique<Sgd>(net->parameters(), cfg.lr, cfg.momentum, cfg.weight_decay);
  else
    opt = std::make_unique<Adam>(net->parameters(), cfg.lr, cfg.weight_decay);

  Generator data_gen(cfg.seed ^ 0x5eed5eed5eedULL);
  TrainingProgress progress;
  const io::FloatStorage save_dtype = io::parse_float_storage(cfg.save_dtype, "--save-dtype");
  if (resuming && has_checkpoint) {
    load_training_checkpoint(dir, *net, *opt, progress);
    data_gen.set_state(progress.data_rng);
    ND_CHECK(progress.epochs_done <= cfg.epochs, "the run in ", dir, " already has ",
             progress.epochs_done, " epochs; pass --epochs above that to continue it");
  }
  DataParallel dp(cfg, *net, resuming, log);

  std::ofstream steps_csv;
  if (write_files) {
    fs::create_directories(dir);
    if (resuming) remove_stale_temporaries(dir);
    // Killed between the state and the exported weights: export them again.
    if (resuming && has_checkpoint &&
        weights_epoch(dir + "/last.safetensors") != progress.epochs_done)
      save_weights(dir + "/last.safetensors", *net, progress.epochs_done, save_dtype);
    io::write_file_atomic(dir + "/config.json", to_json(saved_cfg));
    std::string summary = kSummaryHeader;
    for (const auto& s : progress.history) summary += summary_row(s);
    io::write_file_atomic(dir + "/summary.csv", summary);
    // steps.csv keeps the steps up to the checkpoint (a run stopped mid-epoch wrote more).
    std::string steps = "step,epoch,lr,loss\n";
    if (resuming && fs::exists(dir + "/steps.csv"))
      steps += kept_step_rows(read_file(dir + "/steps.csv"), progress.step);
    io::write_file_atomic(dir + "/steps.csv", steps);
    steps_csv.open(dir + "/steps.csv", std::ios::app);
    ND_CHECK(steps_csv, "cannot write ", dir, "/steps.csv");
  }
  const bool show_progress = comm::is_root() && cfg.progress;
  const bool terminal = &log == &std::cout && isatty(STDOUT_FILENO) != 0;
  log << "nd-train: " << resolve_arch(cfg.arch, cfg.dataset) << " norm=" << cfg.norm << " on "
      << cfg.dataset << " (" << train_count << " train / " << test_count << " test images), device "
      << device.str()
      << (device.is_cpu() ? " (" + std::to_string(cpu_threads()) +
                                (cpu_threads() == 1 ? " thread)" : " threads)")
                          : "")
      << ", " << net->num_parameters() << " parameters"
      << (resuming ? has_checkpoint
                         ? ", resuming after epoch " + std::to_string(progress.epochs_done)
                         : ", no checkpoint yet: starting from epoch 0"
                   : "")
      << (loads_init_weights
              ? ", initial weights " + cfg.init_weights +
                    (cfg.init_skip.empty() ? "" : " (but names matching '" + cfg.init_skip + "')")
              : "")
      << std::endl;

  std::string train_report = bad_image_report(*data.train);
  for (const std::string& report : {train_report, bad_image_report(*data.test)})
    if (!report.empty()) log << report << "\n";
  data::Loader train_loader(data.train, loader_options(cfg));
  data::Loader test_loader(data.test, loader_options(cfg));
  const int64_t steps_per_epoch = dp.steps_per_epoch(train_count);
  const int64_t total_steps = steps_per_epoch * cfg.epochs;
  std::vector<int64_t> milestones;
  for (int64_t k = 1; double(k) * cfg.milestone < 1.0; ++k)
    milestones.push_back(int64_t(double(k) * cfg.milestone * double(cfg.epochs)));

  result.epochs = progress.history;
  int64_t step = progress.step;
  const int64_t last_epoch = cfg.stop_after > 0 ? std::min(cfg.stop_after, cfg.epochs) : cfg.epochs;
  for (int64_t epoch = progress.epochs_done; epoch < last_epoch; ++epoch) {
    const auto t0 = Clock::now();
    std::vector<int64_t> order;
    if (cfg.no_shuffle) {
      order.resize(static_cast<size_t>(train_count));
      std::iota(order.begin(), order.end(), int64_t(0));
    } else {
      order = data_gen.permutation(train_count);
    }
    dp.start_epoch(train_loader, std::move(order), data_gen.next_u64());
    data::Batch b;
    double loss_sum = 0, epoch_lr = 0;
    int64_t correct = 0, seen = 0, batch_index = 0;
    double data_seconds = 0, last_lr = 0;
    std::vector<PendingStep> pending;
    EpochProgress epoch_progress(log, show_progress, terminal, cfg.log_interval, epoch + 1,
                                 cfg.epochs, steps_per_epoch);
    auto flush = [&] {
      for (PendingStep& p : pending) {
        const double loss_value = p.loss.item();
        if (!std::isfinite(loss_value))
          ND_FAIL("training diverged: the loss is ", loss_value, " at step ", p.step + 1,
                  " (epoch ", p.epoch + 1, "); lower --lr (now ", cfg.lr, ") or check the data.",
                  progress.epochs_done > 0
                      ? " The last good checkpoint is " + dir + "/last.safetensors (epoch " +
                            std::to_string(progress.epochs_done) + ")."
                      : std::string());
        const int64_t n = p.labels.numel();
        loss_sum += loss_value * double(n);
        const auto pred = p.predictions.to(Device::cpu()).to_vector<int64_t>();
        const auto y = p.labels.to_vector<int64_t>();
        for (int64_t i = 0; i < n; ++i) correct += pred[size_t(i)] == y[size_t(i)];
        seen += n;
        result.step_losses.push_back(loss_value);
        if (steps_csv.is_open())
          steps_csv << p.step + 1 << "," << p.epoch + 1 << "," << p.lr << "," << loss_value << "\n";
      }
      pending.clear();
    };
    const std::string epoch_name = "during epoch " + std::to_string(epoch + 1);
    for (;;) {
      const auto wait_start = Clock::now();
      const bool more = train_loader.next(b);
      data_seconds += std::chrono::duration<double>(Clock::now() - wait_start).count();
      if (!more) break;
      stop_if_requested(epoch_name, dir, progress.epochs_done, write_files);
      const double lr = cfg.lr_scheduler == "cosine"
                            ? cosine_lr(cfg.lr, step, total_steps)
                            : multistep_lr(cfg.lr, epoch, milestones, cfg.multistep_gamma);
      if (batch_index == 0) epoch_lr = lr;
      last_lr = lr;
      opt->set_lr(lr);
      Tensor labels = b.labels.to(device);
      Tensor logits = (*net)(b.images.to(device));
      Tensor loss = ops::loss(loss_kind, logits, labels);
      opt->zero_grad();
      Tensor global_loss = dp.backward(loss, batch_index);  // loss.backward() on one process
      opt->step();
      pending.push_back({step, epoch, lr, global_loss, ops::argmax(logits.detach()), b.labels});
      ++step;
      ++batch_index;
      if (epoch_progress.due(batch_index)) {
        flush();  // the losses so far come back from the device
        epoch_progress.report({batch_index, loss_sum / double(seen),
                               100.0 * double(correct) / double(seen), seen, data_seconds,
                               last_lr});
      } else if (int64_t(pending.size()) >= kStepsPerSync) {
        flush();
      }
    }
    flush();
    stop_if_requested(epoch_name, dir, progress.epochs_done, write_files);
    if (dp.active()) {
      std::vector<double> totals{loss_sum, double(correct), double(seen)};
      all_reduce_totals(totals);
      loss_sum = totals[0], correct = int64_t(totals[1]), seen = int64_t(totals[2]);
    }
    const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    dp.before_evaluation(*net);
    const EvalResult test = evaluate(*net, test_loader, test_count, loss_kind, device, [&] {
      stop_if_requested("in the test pass of epoch " + std::to_string(epoch + 1), dir,
                        progress.epochs_done, write_files);
    });
    EpochStats s;
    s.epoch = epoch + 1;
    s.lr = epoch_lr;
    s.train_loss = loss_sum / double(seen);
    s.train_top1 = 100.0 * double(correct) / double(seen);
    s.test_loss = test.loss;
    s.test_top1 = test.top1;
    s.test_top5 = test.top5;
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    s.images_per_s = double(seen) / train_seconds;
    result.epochs.push_back(s);
    progress.history.push_back(s);
    progress.epochs_done = epoch + 1;
    progress.step = step;
    progress.data_rng = data_gen.state();
    if (write_files) {
      steps_csv.flush();
      try {
        if (s.test_top1 > progress.best_top1) {
          progress.best_top1 = s.test_top1;
          save_weights(dir + "/best.safetensors", *net, s.epoch, save_dtype);
        }
        save_training_checkpoint(dir, *net, *opt, progress, save_dtype);
      } catch (const Error& e) {
        ND_FAIL(e.what(), "; epoch ", s.epoch, " is lost",
                s.epoch > 1 ? ", the checkpoint of epoch " + std::to_string(s.epoch - 1) + " in " +
                                  dir + " is intact (nd-train --resume " + dir + ")"
                            : std::string());
      }
      std::ofstream(dir + "/summary.csv", std::ios::app) << summary_row(s) << std::flush;
    }
    epoch_progress.finish();
    log << epoch_line(s) << std::endl;
    const std::string report = bad_image_report(*data.train);  // new replacements this epoch
    if (report != train_report) log << report << "\n";
    train_report = report;
  }
  dp.report_replicas(*net, log);
  for (auto& [name, t] : net->state_dict())
    result.final_state[name] = t.detach().to(Device::cpu()).clone();
  return result;
}

EvalResult evaluate_weights(const TrainConfig& cfg, const std::string& weights, std::ostream& log) {
  validate(cfg);
  const Device device = rank_device(cfg.device);
  set_gpu_math({cfg.tf32, cfg.deterministic});
  set_cpu_threads(cfg.threads > 0 ? cfg.threads : default_cpu_threads());
  DataSplits data = load_splits(cfg, false, true);
  std::shared_ptr<Module> net = build_for(cfg, *data.test);
  load_weights(weights, *net);
  net->to(device);
  data::Loader loader(data.test, loader_options(cfg));
  const EvalResult r =
      evaluate(*net, loader, limited(data.test->size(), cfg.test_limit), loss_kind_of(cfg), device);
  log << std::fixed << std::setprecision(4) << "evaluate " << weights << " on " << cfg.dataset
      << " test (" << r.images << " images): loss " << r.loss << "  top1 " << std::setprecision(2)
      << r.top1 << "%  top5 " << r.top5 << "%" << std::endl;
  return r;
}

void print_model_summary(const TrainConfig& cfg, std::ostream& out) {
  validate(cfg);
  const DatasetShape d = network_input_shape(cfg);
  const NetConfig n = net_config(cfg, d.channels, d.height, d.width, d.classes);
  Generator gen(cfg.seed);
  std::shared_ptr<Module> net = build_net(n, gen);
  out << n.arch << " --norm " << cfg.norm << (cfg.ref_compat ? " --ref-compat" : "") << ", "
      << d.classes << " classes, input " << d.channels << "x" << d.height << "x" << d.width << "\n";
  print_summary(out, summarize(*net, {d.channels, d.height, d.width}));
}

}  // namespace nd
