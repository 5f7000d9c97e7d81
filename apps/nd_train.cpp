// nd-train: parse flags, run the trainer (or --summary, --evaluate, --resume). Exit status 0 on
// success, 1 on a reported error (bad flag, missing data, divergence, out of memory, full disk), 2
// on a flag the parser rejects, 128 + the signal number after SIGINT / SIGTERM (the last
// checkpoint kept).
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/interrupt.h"
#include "apps/trainer.h"
#include "engine/comm.h"

namespace {
// Where ranks other than 0 send their log (rank 0 speaks for the job).
class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return c; }
};

// A failing rank reports and, with several ranks, ends them all (none is left waiting).
int fail(const std::string& message) {
  const std::string where = nd::comm::where();
  std::cerr << "nd-train" << (where.empty() ? "" : " (" + where + ")") << ": " << message
            << std::endl;
  if (nd::comm::world_size() > 1) nd::comm::abort(1);
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  nd::comm::init(argc, argv);
  struct Finalize {
    ~Finalize() { nd::comm::finalize(); }
  } finalize_at_exit;
  nd::TrainConfig cfg;
  bool deconv = false, summary = false;
  std::string resume, evaluate;
  CLI::App app{
      "Train a network with batch norm or network deconvolution. Defaults are the reference's "
      "CIFAR recipe."};
  app.add_option("--dataset", cfg.dataset, "cifar10 | cifar100 | fashion-mnist | mnist | imagenet")
      ->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir,
                 "dataset folder (default: data/<dataset>; /usr/share/datasets/<dataset> for "
                 "fashion-mnist and mnist; imagenet: a folder with train/ and val/)");
  app.add_option("--arch", cfg.arch,
                 "vgg16 resnet18 preact18 densenet121 resnext29_32x4d mobilenetv2 dpn92 pnasnetA "
                 "senet18 efficientnetb0 (cifar); vgg11 resnet18 densenet121 (imagenet); linear "
                 "mlp (any)")
      ->capture_default_str();
  app.add_option("--norm", cfg.norm, "bn | nd | none")->capture_default_str();
  app.add_flag("--deconv", deconv, "network deconvolution: the same as --norm nd");
  app.add_option("--loss", cfg.loss, "CE | L2")->capture_default_str();
  app.add_option("--epochs", cfg.epochs)->capture_default_str();
  app.add_option("--stop-after", cfg.stop_after,
                 "stop after epoch N while the schedule spans --epochs; --resume continues the "
                 "run exactly");
  app.add_option("--batch-size", cfg.batch_size,
                 "images per step on each rank (mpirun -np P: the global batch is P times this)")
      ->capture_default_str();
  app.add_option("--sync-stats", cfg.sync_stats,
                 "on | off: with several ranks, batch norm and deconvolution use the statistics "
                 "of the global batch (on) or of each rank's own batch (off, as the reference "
                 "under DistributedDataParallel)")
      ->capture_default_str();
  app.add_option("--lr", cfg.lr, "base learning rate")->capture_default_str();
  app.add_option("--momentum", cfg.momentum)->capture_default_str();
  app.add_option("--wd", cfg.weight_decay, "weight decay (L2, on all parameters)")
      ->capture_default_str();
  app.add_option("--optimizer", cfg.optimizer, "sgd | adam")->capture_default_str();
  app.add_option("--lr-scheduler", cfg.lr_scheduler,
                 "cosine (per iteration down to 0) | multistep (per epoch)")
      ->capture_default_str();
  app.add_option("--milestone", cfg.milestone,
                 "multistep: the rate is multiplied by --multistep-gamma every milestone*epochs")
      ->capture_default_str();
  app.add_option("--multistep-gamma", cfg.multistep_gamma)->capture_default_str();
  app.add_option("--block", cfg.block, "deconvolution block size (channels per matrix)")
      ->capture_default_str();
  app.add_option("--block-fc", cfg.block_fc,
                 "block of the classifier's Delinear with --norm nd (0: plain Linear)")
      ->capture_default_str();
  app.add_option("--deconv-iter", cfg.deconv_iter, "Newton-Schulz steps")->capture_default_str();
  app.add_option("--eps", cfg.eps, "deconvolution regulariser")->capture_default_str();
  app.add_option("--stride", cfg.sampling_stride, "deconvolution sampling stride")
      ->capture_default_str();
  app.add_flag("--freeze", cfg.freeze,
               "freeze every deconvolution's statistics after 100 steps in each 1000");
  app.add_option("--seed", cfg.seed)->capture_default_str();
  app.add_option("--workers", cfg.workers, "data loader threads")->capture_default_str();
  app.add_option("--threads", cfg.threads,
                 "CPU threads of the kernels (OpenBLAS, oneDNN, ours); 0: OMP_NUM_THREADS if set, "
                 "else every core this process may use. A CPU run repeats bitwise for the same "
                 "count")
      ->capture_default_str();
  app.add_option("--device", cfg.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  app.add_option("--output", cfg.output, "run directory (default runs/<date>-<arch>-<norm>)");
  app.add_option(
      "--resume", resume,
      "continue the run in DIR (its config.json gives every setting; --epochs, --stop-after, "
      "--device, --workers, --threads, --save-dtype and --log-interval may change; a larger "
      "--epochs stretches the learning-rate schedule)");
  app.add_option("--evaluate", evaluate,
                 "evaluate a weights file (e.g. DIR/best.safetensors) on the test split and exit");
  app.add_flag("--summary", summary,
               "print the network layer by layer (shapes, parameters, flops) and exit; reads no "
               "data");
  app.add_flag("--ref-compat", cfg.ref_compat,
               "reproduce the reference implementation's bugs (EfficientNet-B0 blocks, "
               "uncentred ChannelDeconv)");
  app.add_option("--deconv-path", cfg.deconv_path,
                 "fused (kernels) | composite (primitive ops, the test oracle)")
      ->capture_default_str();
  app.add_flag("--skip-bad-images", cfg.skip_bad_images,
               "image folders: skip and count unreadable images instead of stopping");
  app.add_option("--image-size", cfg.image_size,
                 "image folders: training crop and validation centre crop (validation resizes "
                 "the shorter side to 256/224 of it)")
      ->capture_default_str();
  app.add_flag("--tf32", cfg.tf32,
               "GPU: TF32 tensor-core math for convolutions and GEMMs (PyTorch's default for "
               "cuDNN convolutions); off: full float32, close to the CPU");
  app.add_flag("--deterministic", cfg.deterministic,
               "GPU: deterministic cuDNN algorithms only, so a run repeats bitwise on the same "
               "GPU and software");
  app.add_option("--save-dtype", cfg.save_dtype,
                 "F32 | F16 | BF16: how float32 tensors are stored in the exported weights "
                 "last.safetensors and best.safetensors; training_state.safetensors (what --resume "
                 "reads) always keeps exact float32")
      ->capture_default_str();
  app.add_option("--init-weights", cfg.init_weights,
                 "start from these weights (safetensors under the reference's names, F32/F16/BF16, "
                 "as nd-infer reads them): parameters and running statistics, with a fresh "
                 "optimizer and schedule; every missing, unexpected or mis-shaped name is an "
                 "error");
  app.add_option("--init-skip", cfg.init_skip,
                 "with --init-weights: names matching this regular expression (the whole name) "
                 "keep their initial values and may be missing or differ in the file, e.g. "
                 "'linear\\..*' to fine-tune to another number of classes");
  app.add_flag("--no-augment", cfg.no_augment,
               "no random crop or flip (image folders: the validation resize and centre crop)");
  app.add_flag("--no-shuffle", cfg.no_shuffle, "batches in the stored order");
  app.add_option("--log-interval", cfg.log_interval,
                 "a progress line every N steps (default 0: about every 10 s)")
      ->capture_default_str();
  app.add_option("--train-limit", cfg.train_limit, "use only the first N training images");
  app.add_option("--test-limit", cfg.test_limit, "use only the first N test images");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("nd-train: error: ") + e.what() + " (see nd-train --help)\n";
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a success
  }
  NullBuffer null_buffer;
  std::ostream quiet(&null_buffer);
  std::ostream& log = nd::comm::is_root() ? std::cout : quiet;
  try {
    if (deconv) cfg.norm = "nd";
    cfg.world_size = nd::comm::world_size();
    std::vector<std::string> given;
    for (const auto& [flag, key] :
         {std::pair<const char*, const char*>{"--batch-size", "batch_size"},
          {"--wd", "weight_decay"},
          {"--epochs", "epochs"}})
      if (app.count(flag)) given.push_back(key);
    nd::apply_recipe_defaults(cfg, given);
    if (!resume.empty()) {
      // Only what does not change the numbers may differ from the saved run.
      for (const char* flag : {"--dataset",
                               "--data-dir",
                               "--arch",
                               "--norm",
                               "--deconv",
                               "--loss",
                               "--batch-size",
                               "--lr",
                               "--momentum",
                               "--wd",
                               "--optimizer",
                               "--lr-scheduler",
                               "--milestone",
                               "--multistep-gamma",
                               "--block",
                               "--block-fc",
                               "--deconv-iter",
                               "--eps",
                               "--stride",
                               "--freeze",
                               "--seed",
                               "--output",
                               "--ref-compat",
                               "--deconv-path",
                               "--train-limit",
                               "--test-limit",
                               "--skip-bad-images",
                               "--image-size",
                               "--tf32",
                               "--deterministic",
                               "--sync-stats",
                               "--init-weights",
                               "--init-skip",
                               "--no-augment",
                               "--no-shuffle"})
        if (app.count(flag) > 0)
          throw nd::Error(std::string("--resume takes ") + flag + " from " + resume +
                          "/config.json; leave it out (only --epochs, --stop-after, --device, "
                          "--workers, --threads, --save-dtype and --log-interval may change)");
      nd::TrainConfig saved = nd::resume_config(resume);
      if (app.count("--epochs")) saved.epochs = cfg.epochs;
      if (app.count("--device")) saved.device = cfg.device;
      if (app.count("--workers")) saved.workers = cfg.workers;
      if (app.count("--save-dtype")) saved.save_dtype = cfg.save_dtype;
      if (app.count("--threads")) saved.threads = cfg.threads;
      saved.log_interval = cfg.log_interval;
      saved.stop_after = cfg.stop_after;
      saved.output = resume;
      nd::install_stop_handlers();
      nd::train(saved, log, resume);
    } else if (summary) {
      nd::print_model_summary(cfg, log);
    } else if (!evaluate.empty()) {
      nd::evaluate_weights(cfg, evaluate, log);
    } else {
      nd::install_stop_handlers();
      nd::train(cfg, log);
    }
  } catch (const nd::Interrupted& e) {
    std::cout << std::flush;
    std::cerr << "nd-train: " << e.what() << "\n";
    // Ranks may see the signal at different steps: end them all rather than leave one waiting
    // in a collective (checkpoints are atomic, so the last good one stays whole).
    if (nd::comm::world_size() > 1) nd::comm::abort(128 + e.signal());
    return 128 + e.signal();
  } catch (const nd::OutOfMemoryError& e) {
    return fail(std::string("error: out of memory: ") + e.what() + "; try a smaller --batch-size");
  } catch (const std::exception& e) {
    return fail(std::string("error: ") + e.what());
  }
  return 0;
}
