// nd-train: parse flags, run the trainer. Exit status 0 on success, 1 on a reported error
// (bad flag, missing data, divergence, out of memory), 2 on a flag the parser rejects.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/trainer.h"

int main(int argc, char** argv) {
  nd::TrainConfig cfg;
  CLI::App app{"Train a network with batch norm or network deconvolution."};
  app.add_option("--dataset", cfg.dataset, "fashion-mnist | mnist")->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir,
                 "dataset folder (default: /usr/share/datasets/<dataset>)");
  app.add_option("--arch", cfg.arch, "network: linear | mlp")->capture_default_str();
  app.add_option("--norm", cfg.norm, "none | bn | nd")->capture_default_str();
  app.add_option("--loss", cfg.loss, "CE | L2")->capture_default_str();
  app.add_option("--epochs", cfg.epochs)->capture_default_str();
  app.add_option("--batch-size", cfg.batch_size)->capture_default_str();
  app.add_option("--lr", cfg.lr, "base learning rate")->capture_default_str();
  app.add_option("--momentum", cfg.momentum)->capture_default_str();
  app.add_option("--wd", cfg.weight_decay, "weight decay (L2, on all parameters)")
      ->capture_default_str();
  app.add_option("--optimizer", cfg.optimizer, "sgd | adam")->capture_default_str();
  app.add_option("--lr-scheduler", cfg.lr_scheduler,
                 "cosine (per iteration down to 0) | multistep (x0.1 at 40% and 80% of epochs)")
      ->capture_default_str();
  app.add_option("--seed", cfg.seed)->capture_default_str();
  app.add_option("--device", cfg.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  app.add_option("--output", cfg.output, "run directory (default runs/<date>-<arch>-<norm>)");
  app.add_flag("--ref-compat", cfg.ref_compat,
               "reproduce the reference implementation's bugs (e.g. uncentred ChannelDeconv)");
  app.add_option("--deconv-path", cfg.deconv_path,
                 "fused (kernels) | composite (primitive ops, the test oracle)")
      ->capture_default_str();
  app.add_option("--train-limit", cfg.train_limit, "use only the first N training images");
  app.add_option("--test-limit", cfg.test_limit, "use only the first N test images");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    nd::train(cfg, std::cout);
  } catch (const nd::OutOfMemoryError& e) {
    std::cerr << "nd-train: out of memory: " << e.what() << "\n  try a smaller --batch-size\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "nd-train: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
