// nd-viz: the paper's pre-experiment Figures 1, 2, 4 and 5 for photographs or a network layer's
// input (see apps/viz_figures.h), then the plotted figures by scripts/plot_viz.py. Exit status 0
// on success, 1 on a reported error (including a plot that could not be drawn), 2 on a flag the
// parser rejects.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "apps/viz_figures.h"

namespace {
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

int main(int argc, char** argv) {
  nd::viz::VizConfig cfg;
  std::string figures = "1,2,4,5";
  bool no_plot = false;
  std::string plot_script = ND_SCRIPTS_DIR "/plot_viz.py";
  CLI::App app{
      "Figures 1, 2, 4 and 5 of network deconvolution (Ye et al. 2020): patch correlations, "
      "deconvolution kernels, the deconvolved input and its histogram, computed with the "
      "engine's kernels."};
  app.add_option("--image", cfg.inputs,
                 "image file or folder (repeatable; default: photographs of python3-skimage)");
  app.add_option("--output", cfg.output, "folder for the figures and their CSV files")
      ->capture_default_str();
  app.add_option("--figures", figures, "which figures, from 1,2,4,5")->capture_default_str();
  app.add_option("--kernel", cfg.kernel, "patch size k (3, 5 or 7)")->capture_default_str();
  app.add_option("--size", cfg.size,
                 "resize (shorter side) and centre-crop images to SIZE x SIZE (0: one image "
                 "keeps its size, several become 256)")
      ->capture_default_str();
  app.add_option("--deconv-iter", cfg.deconv_iter, "Newton-Schulz steps")->capture_default_str();
  app.add_option("--eps", cfg.eps, "regulariser added to the covariance")->capture_default_str();
  app.add_option("--arch", cfg.arch,
                 "show the input of a layer of this network instead of the pixels");
  app.add_option("--norm", cfg.norm, "with --arch: bn | nd")->capture_default_str();
  app.add_option("--dataset", cfg.dataset,
                 "with --arch: cifar10 | cifar100 | imagenet (input size, classes, normalisation)")
      ->capture_default_str();
  app.add_option("--weights", cfg.weights, "with --arch: a checkpoint (e.g. RUN/best.safetensors)");
  app.add_option("--layer", cfg.layer,
                 "with --arch: the module whose input is shown, e.g. layer1.0.conv1");
  app.add_option("--channels", cfg.max_channels,
                 "with --arch: use the first N channels of the layer input")
      ->capture_default_str();
  app.add_flag("--ref-compat", cfg.ref_compat, "with --arch: the reference's network variants");
  app.add_flag("--no-plot", no_plot, "write the CSV and PNG panels only (no matplotlib)");
  app.add_option("--plot-script", plot_script, "the plotting script")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    cfg.figures.clear();
    std::stringstream list(figures);
    for (std::string item; std::getline(list, item, ',');) {
      try {
        cfg.figures.push_back(std::stoi(item));
      } catch (const std::exception&) {
        throw nd::Error("--figures '" + figures + "' is not a comma-separated list of numbers");
      }
    }
    nd::viz::make_figures(cfg, std::cout);
  } catch (const std::exception& e) {
    std::cerr << "nd-viz: error: " << e.what() << "\n";
    return 1;
  }
  if (no_plot) return 0;
  std::cout << std::flush;  // our lines before the plotter's
  const std::string command = "bash " + shell_quote(ND_SCRIPTS_DIR "/matplotlib.sh") + " " +
                              shell_quote(plot_script) + " " + shell_quote(cfg.output);
  if (std::system(command.c_str()) != 0) {
    std::cerr << "nd-viz: error: the plots were not drawn (" << command
              << "); the CSV and PNG panels are in " << cfg.output
              << ". Install python3-matplotlib, or pass --no-plot\n";
    return 1;
  }
  return 0;
}
