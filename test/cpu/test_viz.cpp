// nd-viz's figure numbers on real photographs of python3-skimage and on signals whose answer is
// known: deconvolved patches of a natural image are uncorrelated (their correlation matrix is
// close to the identity, where the photograph's is far from it), its whitening kernels are
// centre-surround (positive centre, negative mean neighbour) while those of white noise are a
// lone centre, the deconvolved image is more peaked than the input (higher kurtosis), and the
// fold + conv path (as FastDeconv computes) equals the whitened patches written out.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "apps/viz_figures.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/temp_dir.h"

using namespace nd;
using namespace nd::viz;
namespace fs = std::filesystem;

namespace {

std::string photo(const std::string& name) {
  const std::string path = (fs::path(skimage_data_dir()) / name).string();
  INFO("install python3-skimage (or set ND_SKIMAGE_DATA_DIR): missing " << path);
  REQUIRE(fs::exists(path));
  return path;
}

// A colour photograph at 128 x 128 (resized and centre-cropped), pixels in [0, 1].
Tensor astronaut() {
  return load_photographs({photo("astronaut.png")}, 128);
}

std::map<std::string, std::string> read_summary(const std::string& path) {
  std::ifstream in(path);
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    const size_t comma = line.find(',');
    if (comma != std::string::npos) out[line.substr(0, comma)] = line.substr(comma + 1);
  }
  return out;
}

}  // namespace

TEST_CASE("photographs load as one batch, grey ones as one channel", "[viz]") {
  const Tensor colour = astronaut();
  CHECK(colour.shape() == Shape{1, 3, 128, 128});
  const Tensor grey = load_photographs({photo("camera.png")}, 0);  // keeps its own size
  CHECK(grey.shape() == Shape{1, 1, 512, 512});
  const Tensor both = load_photographs({photo("camera.png"), photo("chelsea.png")}, 0);
  CHECK(both.shape() == Shape{2, 3, 256, 256});  // several images: 256 x 256, colour wins
  const std::vector<float> v = colour.to_vector<float>();
  CHECK(*std::min_element(v.begin(), v.end()) >= 0.0f);
  CHECK(*std::max_element(v.begin(), v.end()) <= 1.0f);
}

TEST_CASE("deconvolved patches of a photograph are uncorrelated", "[viz]") {
  const Tensor x = astronaut();
  const PatchWhitening w = whiten_patches(x, 3, 15, 1e-5);
  REQUIRE(w.nf() == 27);
  CHECK(w.patches == 126 * 126);
  const Tensor rows = patch_rows(x, 3);
  REQUIRE(rows.shape() == Shape{126 * 126, 27});
  // The engine's sampled covariance (stride 1, no padding) is the covariance of these rows.
  const auto [mean, cov] = ops::rows_covariance(rows, 1e-5);
  test::require_close(w.cov, cov, 1e-4, 1e-7, "sampled covariance against the rows' covariance");
  test::require_close(w.mean, mean, 1e-5, 1e-7, "sampled mean against the rows' mean");

  const Tensor before = correlation(rows);
  const Tensor after = correlation(deconvolve_rows(rows, w));
  const OffDiagonal b = off_diagonal(before), a = off_diagonal(after);
  INFO("off-diagonal |r| before: max " << b.max_abs << " mean " << b.mean_abs << "; after: max "
                                       << a.max_abs << " mean " << a.mean_abs);
  // Neighbouring pixels and colour channels of a photograph are strongly correlated ...
  CHECK(b.mean_abs > 0.5);
  CHECK(b.max_abs > 0.9);
  // ... the deconvolved ones hardly (eps and float32 leave a little).
  CHECK(a.mean_abs < 0.03);
  CHECK(a.max_abs < 0.15);
  // Five Newton-Schulz steps (the default of inner layers) whiten only partly.
  const Tensor partly = correlation(deconvolve_rows(rows, whiten_patches(x, 3, 5, 1e-5)));
  CHECK(off_diagonal(partly).mean_abs > 5 * a.mean_abs);

  // The averaged views: 9x9 taps and 3x3 channels, with ones on the diagonal.
  const Tensor pixel = pixelwise_correlation(before, 3, 3);
  const Tensor channel = channelwise_correlation(before, 3, 3);
  REQUIRE(pixel.shape() == Shape{9, 9});
  REQUIRE(channel.shape() == Shape{3, 3});
  CHECK(pixel.to_vector<double>()[0] == Approx(1.0));
  CHECK(channel.to_vector<double>()[4] == Approx(1.0));
  CHECK(off_diagonal(pixelwise_correlation(after, 3, 3)).max_abs < 0.15);
}

TEST_CASE("averaged correlation views take the entries they name", "[viz]") {
  // 2 channels, 1x1 "kernel": the pixel-wise view is the mean diagonal, the channel-wise the
  // whole matrix; with k = 3 and 1 channel, pixel-wise is the matrix itself.
  const Tensor m = Tensor::from_vector<double>({1, 0.25, 0.25, 1}, {2, 2});
  test::require_close(channelwise_correlation(m, 2, 1), m, 0, 0, "channel-wise, k = 1");
  CHECK(pixelwise_correlation(m, 2, 1).to_vector<double>() == std::vector<double>{1.0});
  const OffDiagonal o = off_diagonal(m);
  CHECK(o.max_abs == 0.25);
  CHECK(o.mean_abs == 0.25);
}

TEST_CASE("whitening kernels of a photograph are centre-surround, of white noise a centre",
          "[viz]") {
  const PatchWhitening w = whiten_patches(astronaut(), 3, 15, 1e-5);
  const DeconvKernels k = deconvolution_kernels(w);
  REQUIRE(k.weight.shape() == Shape{3, 3, 3, 3});
  for (int64_t o = 0; o < 3; ++o) {
    const CentreSurround cs = centre_surround(k.weight, o);
    INFO("kernel " << o << ": centre " << cs.centre << ", mean neighbour " << cs.surround);
    CHECK(cs.centre > 0);
    CHECK(cs.surround < 0);
    CHECK(cs.surround < -0.05 * cs.centre);
  }
  // Kernel o is D's row at o's centre tap (D applied to a delta), and the bias is -kernel . mean.
  const std::vector<double> d = w.deconv.to_vector<double>(), kw = k.weight.to_vector<double>();
  for (int64_t f = 0; f < 27; ++f) CHECK(kw[size_t(27 + f)] == Approx(d[size_t(13 * 27 + f)]));

  // Independent pixels: nothing to remove, the kernel is a scaled delta.
  Generator gen(5);
  const Tensor noise = uniform_tensor({1, 1, 96, 96}, 0.0, 1.0, gen);
  const DeconvKernels flat = deconvolution_kernels(whiten_patches(noise, 3, 15, 1e-5));
  const CentreSurround cs = centre_surround(flat.weight, 0);
  INFO("noise: centre " << cs.centre << ", mean neighbour " << cs.surround);
  CHECK(cs.centre == Approx(1.0 / std::sqrt(1.0 / 12.0)).epsilon(0.05));  // 1 / std of U(0, 1)
  CHECK(std::abs(cs.surround) < 0.02 * cs.centre);
}

TEST_CASE("the deconvolved image is FastDeconv's output and more peaked than the input", "[viz]") {
  const Tensor x = astronaut();
  const PatchWhitening w = whiten_patches(x, 3, 15, 1e-5);
  const Tensor z = deconvolve_image(x, w);
  REQUIRE(z.shape() == Shape{1, 3, 126, 126});
  // The centre columns of the whitened patches, written out, are the fold + conv2d result.
  const Tensor centres = deconvolve_rows(patch_rows(x, 3), w)  // (126*126, 27)
                             .slice(1, 4, 27, 9)               // channel c's centre tap 9c + 4
                             .transpose(0, 1)
                             .reshape({1, 3, 126, 126});
  test::require_close(z, centres, 1e-3, 1e-3 * test::max_abs(z), "fold + conv2d vs (X - mu) D");

  const Tensor inner = x.slice(2, 1, 127).slice(3, 1, 127).contiguous();
  const double before = kurtosis(standardised_values(inner));
  const double after = kurtosis(standardised_values(z));
  INFO("kurtosis of the input " << before << ", of the deconvolved image " << after);
  CHECK(after > 2 * before);
  CHECK(after > 6);

  // The measure itself: 3 for Gaussian samples, 1 for two equal spikes.
  Generator gen(9);
  std::vector<double> gauss(200000);
  for (double& g : gauss) g = gen.normal();
  CHECK(kurtosis(gauss) == Approx(3.0).epsilon(0.03));
  CHECK(kurtosis({-1, 1, -1, 1}) == Approx(1.0));
}

TEST_CASE("histogram densities integrate to the share inside the range", "[viz]") {
  const Histogram h = histogram({-0.5, 0.2, 0.3, 4.0}, 4, 1.0);  // bins of width 0.5
  REQUIRE(h.centres == std::vector<double>{-0.75, -0.25, 0.25, 0.75});
  CHECK(h.density == std::vector<double>{0.0, 0.5, 1.0, 0.0});  // 4.0 lies outside
  double integral = 0;
  for (double d : h.density) integral += d * 0.5;
  CHECK(integral == Approx(0.75));
}

TEST_CASE("make_figures writes every figure's files for a photograph and a layer input", "[viz]") {
  test::TempDir dir("viz");
  VizConfig cfg;
  cfg.inputs = {photo("chelsea.png")};
  cfg.size = 96;
  cfg.output = dir.file("photo");
  std::ostringstream log;
  const VizResult r = make_figures(cfg, log);
  for (const char* f :
       {"fig1_corr_before.csv", "fig1_corr_after.csv", "fig1_pixel_before.csv",
        "fig1_channel_after.csv", "fig2_kernels.csv", "fig2_kernels.png", "fig4_input.png",
        "fig4_abs_input.png", "fig4_deconv.png", "fig4_abs_deconv.png", "fig5_histogram.csv"}) {
    INFO(f);
    CHECK(fs::file_size(dir.file(std::string("photo/") + f)) > 0);
  }
  auto s = read_summary(dir.file("photo/summary.csv"));
  CHECK(s.at("channels") == "3");
  CHECK(std::stod(s.at("offdiag_mean_after")) == Approx(r.after.mean_abs));
  CHECK(std::stod(s.at("kurtosis_after")) > std::stod(s.at("kurtosis_before")));
  // fig1_corr_before.csv: the 27x27 matrix, rows of 27 numbers.
  std::ifstream corr(dir.file("photo/fig1_corr_before.csv"));
  std::string line;
  int lines = 0;
  while (std::getline(corr, line)) {
    CHECK(std::count(line.begin(), line.end(), ',') == 26);
    ++lines;
  }
  CHECK(lines == 27);

  // The input of a layer of a (randomly initialised) CIFAR network: 64 channels of 32x32.
  cfg.arch = "resnet18";
  cfg.layer = "layer1.0.conv1";
  cfg.max_channels = 8;
  cfg.figures = {1, 2};
  cfg.output = dir.file("layer");
  const VizResult layer = make_figures(cfg, log);
  CHECK(layer.channels == 8);
  CHECK(layer.height == 32);
  CHECK(layer.source == "resnet18 layer1.0.conv1 input");
  CHECK(fs::exists(dir.file("layer/fig2_kernels.png")));
  CHECK(!fs::exists(dir.file("layer/fig4_input.png")));
  CHECK(layer.after.mean_abs < layer.before.mean_abs);

  cfg.layer = "layer9";
  test::check_error_contains([&] { make_figures(cfg, log); },
                             {"--layer layer9", "layer1.0.conv1", "conv1"});
  cfg.arch = "";
  cfg.figures = {3};
  test::check_error_contains([&] { make_figures(cfg, log); }, {"--figures", "plot_curves"});
}
