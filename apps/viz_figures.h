// nd-viz's work: the paper's Figures 1, 2, 4 and 5 (Ye et al. 2020) for photographs or for the
// input of one layer of a (trained) network. It writes into the output folder the numbers behind
// each figure as CSV, the image panels as PNG (stb_image_write) and summary.csv; the plotted
// figures (fig1.png ... fig5.png) are drawn from those by scripts/plot_viz.py (matplotlib), which
// nd-viz runs afterwards.
//   Fig. 1: correlation matrices of the k x k patches before and after deconvolution: the whole
//           patch (fig1_corr_*.csv), pixel-wise within a channel (fig1_pixel_*.csv) and
//           channel-wise at the same tap (fig1_channel_*.csv).
//   Fig. 2: the deconvolution kernels (fig2_kernels.csv, fig2_kernels.png).
//   Fig. 4: the input, its zero-mean absolute value, the deconvolved input and its absolute
//           value (fig4_*.png), of the first image.
//   Fig. 5: densities of the standardised values before and after (fig5_histogram.csv).
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "apps/viz.h"

namespace nd::viz {

struct VizConfig {
  std::vector<std::string> inputs;  // image files or folders; empty: default_photographs()
  std::string output = "figures";
  std::vector<int> figures{1, 2, 4, 5};
  int64_t kernel = 3;
  // Images are resized (shorter side) and centre-cropped to size x size; 0: one image keeps its
  // size, several are brought to 256. Layer inputs: the network's input size.
  int64_t size = 0;
  int64_t deconv_iter = 15;
  double eps = 1e-5;
  // A network layer's input instead of the pixels (--arch): the images go through the network
  // (resized to its input, normalised as its data set's recipe) in eval mode, and the figures
  // are of the first max_channels channels of the input of module `layer`.
  std::string arch, norm = "nd", dataset = "cifar10", weights, layer;
  bool ref_compat = false;
  int64_t max_channels = 64;
};

struct VizResult {
  std::string source;  // "pixels" or "<arch> <layer> input"
  int64_t images = 0, channels = 0, height = 0, width = 0;
  PatchWhitening whitening;
  OffDiagonal before, after;                       // of the patch correlation matrix
  double centre_min = 0, surround_max = 0;         // over the kernels (Fig. 2)
  double kurtosis_before = 0, kurtosis_after = 0;  // of the standardised values (Fig. 5)
};

// Where Debian's python3-skimage keeps its sample images ($ND_SKIMAGE_DATA_DIR overrides), and
// the natural colour photographs among them nd-viz uses by default.
std::string skimage_data_dir();
std::vector<std::string> default_photographs();

// Decodes the files into one batch (N, C, S, S) with pixels in [0, 1] (size as in VizConfig);
// C = 1 when every image is grey (R = G = B), else 3.
Tensor load_photographs(const std::vector<std::string>& files, int64_t size);
// The image files named by cfg.inputs (folders listed recursively).
std::vector<std::string> input_files(const VizConfig& cfg);
// The input of cfg.layer for the images (cfg.arch, cfg.weights; random weights when empty).
Tensor layer_input(const VizConfig& cfg, const std::vector<std::string>& files, std::ostream& log);

// Computes the figures cfg.figures asks for and writes their files into cfg.output.
VizResult make_figures(const VizConfig& cfg, std::ostream& log);

}  // namespace nd::viz
