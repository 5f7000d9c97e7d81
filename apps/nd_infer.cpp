// nd-infer: run a trained network (ours or PyTorch's, by the reference's names) on a batch of
// images stored as safetensors. Exit status 0 on success, 1 on a reported error, 2 on a flag the
// parser rejects.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/infer.h"

int main(int argc, char** argv) {
  nd::InferConfig cfg;
  CLI::App app{"Compute logits (N, K) of a network for the float32 tensor 'input' (N, C, H, W)."};
  app.add_option("--arch", cfg.net.arch, "network name (imagenet_resnet18 etc. for ImageNet)")
      ->required();
  app.add_option("--norm", cfg.net.norm, "bn | nd | none")->required();
  app.add_option("--classes", cfg.net.num_classes, "number of classes K")->required();
  app.add_option("--weights", cfg.weights, "safetensors weights")->required();
  app.add_option("--input", cfg.input, "safetensors file with the tensor 'input'")->required();
  app.add_option("--output", cfg.output, "safetensors file to write with the tensor 'logits'")
      ->required();
  app.add_flag("--train-mode", cfg.train_mode,
               "use batch statistics (a training step's forward) instead of the running ones");
  app.add_flag("--ref-compat", cfg.net.ref_compat, "the reference's networks, bugs included");
  app.add_option("--block", cfg.net.deconv.block, "deconvolution block the model was trained with")
      ->capture_default_str();
  app.add_option("--block-fc", cfg.net.block_fc, "classifier Delinear block (0: Linear)")
      ->capture_default_str();
  app.add_option("--deconv-iter", cfg.net.deconv.n_iter, "Newton-Schulz steps")
      ->capture_default_str();
  app.add_option("--eps", cfg.net.deconv.eps)->capture_default_str();
  app.add_option("--stride", cfg.net.deconv.sampling_stride, "deconvolution sampling stride")
      ->capture_default_str();
  app.add_option("--device", cfg.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    nd::Tensor logits = nd::run_inference(cfg);
    std::cout << "nd-infer: wrote logits " << nd::shape_str(logits.shape()) << " to " << cfg.output
              << "\n";
  } catch (const nd::OutOfMemoryError& e) {
    std::cerr << "nd-infer: out of memory: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "nd-infer: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
