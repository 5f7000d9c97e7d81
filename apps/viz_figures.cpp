// nd-viz's figures (see viz_figures.h): input images or a layer's input, the computations of
// viz.h, and the CSV, PNG (stb_image_write) and summary files.
#include "apps/viz_figures.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/train_config.h"
#include "data/image_folder.h"
#include "data/image_transforms.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "io/atomic_file.h"

#if ND_WITH_STB
#include "stb_image_write.h"
#endif

namespace nd::viz {

namespace fs = std::filesystem;

namespace {

// Fig. 2 shows at most this many kernels and input channels of each.
constexpr int64_t kMaxKernelTiles = 8;
// Fig. 4 panels are enlarged (nearest neighbour) to at least this many pixels a side.
constexpr int64_t kMinPanelSide = 128;
// Fig. 4 scales magnitudes by this quantile of |value| (clipping the brightest few pixels).
constexpr double kDisplayQuantile = 0.995;
constexpr int64_t kHistogramBins = 161;
constexpr double kHistogramRange = 8.0;  // standard deviations each side

bool wants(const VizConfig& cfg, int figure) {
  return std::find(cfg.figures.begin(), cfg.figures.end(), figure) != cfg.figures.end();
}

bool all_grey(const data::RgbImage& im) {
  for (size_t i = 0; i < im.pixels.size(); i += 3)
    if (im.pixels[i] != im.pixels[i + 1] || im.pixels[i] != im.pixels[i + 2]) return false;
  return true;
}

// (3, S, S) float of one image: Resize(S) (shorter side) + CenterCrop(S), optionally normalised;
// S = 0 keeps the image's own size.
std::vector<float> image_floats(const data::RgbImage& im, int64_t size, bool normalize,
                                const std::array<float, 3>& mean,
                                const std::array<float, 3>& stddev) {
  if (size == 0) {
    std::vector<float> out(size_t(3 * im.height * im.width));
    data::to_chw_float(im, normalize, mean, stddev, out.data());
    return out;
  }
  data::ImageTransform t = data::imagenet_eval_transform(size, size);
  t.normalize = normalize;
  t.mean = mean;
  t.stddev = stddev;
  std::vector<float> out(size_t(3 * size * size));
  Generator unused(0);
  data::apply_image_transform(t, im, unused, out.data());
  return out;
}

// ---- writing

std::string number(double v) {
  std::ostringstream s;
  s << std::setprecision(9) << v;
  return s.str();
}

void write_matrix_csv(const std::string& path, const Tensor& m) {
  const int64_t rows = m.size(0), cols = m.size(1);
  const std::vector<double> v = m.to_vector<double>();
  std::string text;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) text += (j ? "," : "") + number(v[size_t(i * cols + j)]);
    text += "\n";
  }
  io::write_file_atomic(path, text);
}

// 8-bit pixels (height, width, channels) as a PNG.
void write_png(const std::string& path, int64_t width, int64_t height, int channels,
               const std::vector<uint8_t>& pixels) {
#if ND_WITH_STB
  const std::string tmp = path + ".tmp";
  ND_CHECK(stbi_write_png(tmp.c_str(), int(width), int(height), channels, pixels.data(),
                          int(width) * channels) != 0,
           "cannot write ", tmp);
  fs::rename(tmp, path);
#else
  (void)width, (void)height, (void)channels, (void)pixels;
  ND_FAIL("cannot write ", path,
          ": this build has no stb_image_write (install libstb-dev and "
          "rebuild)");
#endif
}

uint8_t to_byte(double v) {
  return uint8_t(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
}

// Blue (-1) through white (0) to red (+1).
std::array<uint8_t, 3> diverging(double v) {
  v = std::clamp(v, -1.0, 1.0);
  const double fade = 1.0 - std::abs(v);
  return v >= 0 ? std::array<uint8_t, 3>{255, to_byte(fade), to_byte(fade)}
                : std::array<uint8_t, 3>{to_byte(fade), to_byte(fade), 255};
}

double quantile_of_abs(std::vector<double> v, double q) {
  for (double& a : v) a = std::abs(a);
  const size_t i = std::min(v.size() - 1, size_t(q * double(v.size())));
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(i), v.end());
  return v[i] > 0 ? v[i] : 1.0;
}

// One image of a panel: values (C, H, W) with C = 1 or 3, already mapped to [0, 1], enlarged to
// at least kMinPanelSide a side.
void write_panel(const std::string& path, const std::vector<double>& values, int64_t channels,
                 int64_t height, int64_t width) {
  const int64_t zoom = std::max<int64_t>(1, kMinPanelSide / std::min(height, width));
  const int64_t h = height * zoom, w = width * zoom;
  std::vector<uint8_t> px(size_t(h * w * channels));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < channels; ++c)
        px[size_t((y * w + x) * channels + c)] =
            to_byte(values[size_t((c * height + y / zoom) * width + x / zoom)]);
  write_png(path, w, h, int(channels), px);
}

// The first image of x (N, C, H, W) in the channels a panel shows: all of them for 1 or 3
// channels, else the first.
std::vector<double> first_image(const Tensor& x, int64_t& shown_channels) {
  const int64_t c = x.size(1), plane = x.size(2) * x.size(3);
  shown_channels = (c == 1 || c == 3) ? c : 1;
  std::vector<double> v = x.slice(0, 0, 1).to_vector<double>();
  v.resize(size_t(shown_channels * plane));
  (void)c;
  return v;
}

std::vector<std::string> write_fig4(const std::string& dir, const Tensor& input,
                                    const Tensor& deconvolved, bool pixels) {
  const int64_t k = input.size(2) - deconvolved.size(2);  // k - 1
  const int64_t h = deconvolved.size(2), w = deconvolved.size(3);
  // The input over the same interior as the deconvolved signal (patches lie inside the image).
  const Tensor inner = input.slice(2, k / 2, k / 2 + h).slice(3, k / 2, k / 2 + w).contiguous();
  int64_t c = 0;
  std::vector<double> a = first_image(inner, c);
  const std::vector<double> centred_all = standardised_values(inner.slice(0, 0, 1).contiguous());
  std::vector<double> b(centred_all.begin(), centred_all.begin() + std::ptrdiff_t(a.size()));
  std::vector<double> d = first_image(deconvolved, c);
  if (!pixels) {  // a layer's input has no fixed range: stretch it
    const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
    const double low = *lo, span = *hi > *lo ? *hi - *lo : 1.0;
    for (double& v : a) v = (v - low) / span;
  }
  const double b_scale = quantile_of_abs(b, kDisplayQuantile);
  for (double& v : b) v = std::abs(v) / b_scale;
  const double d_scale = quantile_of_abs(d, kDisplayQuantile);
  std::vector<double> d_abs = d;
  for (double& v : d) v = 0.5 + 0.5 * v / d_scale;
  for (double& v : d_abs) v = std::abs(v) / d_scale;
  const std::vector<std::pair<std::string, std::vector<double>*>> panels = {
      {"fig4_input.png", &a},
      {"fig4_abs_input.png", &b},
      {"fig4_deconv.png", &d},
      {"fig4_abs_deconv.png", &d_abs}};
  std::vector<std::string> written;
  for (const auto& [name, values] : panels) {
    write_panel(dir + "/" + name, *values, c, h, w);
    written.push_back(name);
  }
  return written;
}

// Kernel tiles: one row per kernel o (first kMaxKernelTiles), one column per input channel
// (first kMaxKernelTiles) in blue-white-red scaled by the kernel's largest |weight|; with three
// channels a first column shows the kernel as colour (0.5 + w / (2 max|w|) per channel).
std::vector<std::string> write_fig2(const std::string& dir, const DeconvKernels& kernels) {
  const int64_t c = kernels.weight.size(0), k = kernels.weight.size(2), taps = k * k;
  const std::vector<double> w = kernels.weight.to_vector<double>();
  std::string csv = "kernel,channel,ky,kx,weight\n";
  for (int64_t o = 0; o < c; ++o)
    for (int64_t i = 0; i < c; ++i)
      for (int64_t t = 0; t < taps; ++t)
        csv += std::to_string(o) + "," + std::to_string(i) + "," + std::to_string(t / k) + "," +
               std::to_string(t % k) + "," + number(w[size_t((o * c + i) * taps + t)]) + "\n";
  io::write_file_atomic(dir + "/fig2_kernels.csv", csv);

  const int64_t rows = std::min(c, kMaxKernelTiles), inputs = std::min(c, kMaxKernelTiles);
  const bool colour = c == 3;
  const int64_t cols = inputs + (colour ? 1 : 0);
  const int64_t cell = std::max<int64_t>(8, 96 / k), tile = cell * k, gap = 6;
  const int64_t width = cols * tile + (cols + 1) * gap, height = rows * tile + (rows + 1) * gap;
  std::vector<uint8_t> px(size_t(width * height * 3), 64);  // dark grey background
  auto put = [&](int64_t row, int64_t col, int64_t t, std::array<uint8_t, 3> rgb) {
    const int64_t y0 = gap + row * (tile + gap) + (t / k) * cell;
    const int64_t x0 = gap + col * (tile + gap) + (t % k) * cell;
    for (int64_t y = y0; y < y0 + cell; ++y)
      for (int64_t x = x0; x < x0 + cell; ++x)
        for (int64_t ch = 0; ch < 3; ++ch) px[size_t((y * width + x) * 3 + ch)] = rgb[size_t(ch)];
  };
  for (int64_t o = 0; o < rows; ++o) {
    const double* kern = w.data() + o * c * taps;
    double scale = 0;
    for (int64_t j = 0; j < c * taps; ++j) scale = std::max(scale, std::abs(kern[j]));
    if (scale == 0) scale = 1;
    for (int64_t t = 0; t < taps; ++t) {
      if (colour)
        put(o, 0, t,
            {to_byte(0.5 + 0.5 * kern[t] / scale), to_byte(0.5 + 0.5 * kern[taps + t] / scale),
             to_byte(0.5 + 0.5 * kern[2 * taps + t] / scale)});
      for (int64_t i = 0; i < inputs; ++i)
        put(o, i + (colour ? 1 : 0), t, diverging(kern[i * taps + t] / scale));
    }
  }
  write_png(dir + "/fig2_kernels.png", width, height, 3, px);
  return {"fig2_kernels.csv", "fig2_kernels.png"};
}

std::vector<std::string> write_fig1(const std::string& dir, const Tensor& before,
                                    const Tensor& after, int64_t channels, int64_t kernel) {
  std::vector<std::string> written;
  for (const auto& [when, corr] :
       {std::pair<const char*, Tensor>{"before", before}, {"after", after}}) {
    const std::vector<std::pair<std::string, Tensor>> files = {
        {std::string("fig1_corr_") + when + ".csv", corr},
        {std::string("fig1_pixel_") + when + ".csv", pixelwise_correlation(corr, channels, kernel)},
        {std::string("fig1_channel_") + when + ".csv",
         channelwise_correlation(corr, channels, kernel)}};
    for (const auto& [name, m] : files) {
      write_matrix_csv(dir + "/" + name, m);
      written.push_back(name);
    }
  }
  return written;
}

std::vector<std::string> write_fig5(const std::string& dir, const std::vector<double>& before,
                                    const std::vector<double>& after) {
  const Histogram a = histogram(before, kHistogramBins, kHistogramRange);
  const Histogram b = histogram(after, kHistogramBins, kHistogramRange);
  std::string csv = "value,density_before,density_after\n";
  for (size_t i = 0; i < a.centres.size(); ++i)
    csv += number(a.centres[i]) + "," + number(a.density[i]) + "," + number(b.density[i]) + "\n";
  io::write_file_atomic(dir + "/fig5_histogram.csv", csv);
  return {"fig5_histogram.csv"};
}

class CaptureInput : public ForwardObserver {
 public:
  explicit CaptureInput(const Module* target) : target_(target) {}
  void on_forward(const Module& m, const Tensor& in, const Tensor&) override {
    if (&m == target_ && !captured.defined()) captured = in.detach().contiguous();
  }
  Tensor captured;

 private:
  const Module* target_;
};

}  // namespace

std::string skimage_data_dir() {
  const char* env = std::getenv("ND_SKIMAGE_DATA_DIR");
  return env && *env ? env : "/usr/lib/python3/dist-packages/skimage/data";
}

std::vector<std::string> default_photographs() {
  std::vector<std::string> out;
  for (const char* f :
       {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"})
    out.push_back((fs::path(skimage_data_dir()) / f).string());
  return out;
}

std::vector<std::string> input_files(const VizConfig& cfg) {
  if (cfg.inputs.empty()) {
    std::vector<std::string> files = default_photographs();
    for (const auto& f : files)
      ND_CHECK(fs::exists(f), "default photograph ", f,
               " not found: install python3-skimage (apt-get install python3-skimage), set "
               "ND_SKIMAGE_DATA_DIR, or pass --image FILE|DIR");
    return files;
  }
  std::vector<std::string> files;
  for (const auto& in : cfg.inputs) {
    ND_CHECK(fs::exists(in), "--image ", in, " does not exist");
    if (fs::is_directory(in)) {
      const std::vector<std::string> found = data::list_image_files(in);
      ND_CHECK(!found.empty(), "--image ", in, " holds no image files (.jpg .jpeg .png .bmp .ppm)");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  return files;
}

Tensor load_photographs(const std::vector<std::string>& files, int64_t size) {
  ND_CHECK(!files.empty(), "no images to load");
  ND_CHECK(size >= 0, "--size must be >= 0, got ", size);
  if (size == 0 && files.size() > 1) size = 256;
  std::vector<data::RgbImage> images;
  bool grey = true;
  for (const auto& f : files) {
    images.push_back(data::decode_image_file(f));
    grey = grey && all_grey(images.back());
  }
  const int64_t h = size ? size : images[0].height, w = size ? size : images[0].width;
  const int64_t channels = grey ? 1 : 3, plane = h * w;
  std::vector<float> batch;
  for (const auto& im : images) {
    const std::vector<float> rgb = image_floats(im, size, false, {}, {});
    batch.insert(batch.end(), rgb.begin(), rgb.begin() + channels * plane);
  }
  return Tensor::from_vector(batch, {int64_t(images.size()), channels, h, w});
}

Tensor layer_input(const VizConfig& cfg, const std::vector<std::string>& files, std::ostream& log) {
  TrainConfig tc;
  tc.dataset = cfg.dataset;
  tc.arch = cfg.arch;
  tc.norm = cfg.norm;
  tc.ref_compat = cfg.ref_compat;
  validate(tc);
  ND_CHECK(cfg.dataset == "cifar10" || cfg.dataset == "cifar100" || cfg.dataset == "imagenet",
           "--dataset ", cfg.dataset,
           ": layer inputs need colour images; use cifar10, cifar100 or imagenet");
  const DatasetShape d = network_input_shape(tc);
  Generator gen(tc.seed);
  std::shared_ptr<Module> net =
      build_net(net_config(tc, d.channels, d.height, d.width, d.classes), gen);
  if (cfg.weights.empty())
    log << "nd-viz: no --weights: the network keeps its random initialisation (seed 0)\n";
  else
    load_weights(cfg.weights, *net);
  const Module* target = nullptr;
  std::string names;
  for (const auto& [name, m] : net->named_modules()) {
    if (name == cfg.layer) target = m;
    if (m->type_name() == "FastDeconv" || m->type_name() == "Conv2d")
      names += (names.empty() ? "" : ", ") + name;
  }
  ND_CHECK(!cfg.layer.empty(), "--arch needs --layer NAME; the convolutions of ", tc.arch,
           " are: ", names);
  ND_CHECK(target, "--layer ", cfg.layer, " is not a module of ", tc.arch,
           "; its convolutions are: ", names);
  const bool c100 = cfg.dataset == "cifar100", imagenet = cfg.dataset == "imagenet";
  const auto& mean = imagenet ? data::kImageNetMean
                     : c100   ? data::kCifar100Mean
                              : data::kCifar10Mean;
  const auto& stddev = imagenet ? data::kImageNetStd
                       : c100   ? data::kCifar100Std
                                : data::kCifar10Std;
  std::vector<float> batch;
  for (const auto& f : files) {
    const std::vector<float> x =
        image_floats(data::decode_image_file(f), d.height, true, mean, stddev);
    batch.insert(batch.end(), x.begin(), x.end());
  }
  const Tensor images = Tensor::from_vector(batch, {int64_t(files.size()), 3, d.height, d.width});
  NoGradGuard no_grad;
  net->eval();
  CaptureInput capture(target);
  (*net)(images);
  ND_CHECK(capture.captured.defined(), "--layer ", cfg.layer,
           " was not called by the forward pass");
  ND_CHECK(capture.captured.dim() == 4, "--layer ", cfg.layer, " takes input of shape ",
           shape_str(capture.captured.shape()), "; nd-viz needs a feature map (N, C, H, W)");
  return capture.captured;
}

VizResult make_figures(const VizConfig& cfg, std::ostream& log) {
  for (int f : cfg.figures)
    ND_CHECK(f == 1 || f == 2 || f == 4 || f == 5, "--figures: ", f,
             " is not one of 1, 2, 4, 5 (Figures 3 and 6 are training curves: "
             "scripts/plot_curves.py)");
  ND_CHECK(cfg.kernel == 3 || cfg.kernel == 5 || cfg.kernel == 7,
           "--kernel must be 3, 5 or 7, got ", cfg.kernel);
  ND_CHECK(cfg.max_channels >= 1, "--channels must be >= 1, got ", cfg.max_channels);
  const std::vector<std::string> files = input_files(cfg);
  VizResult r;
  Tensor x;
  if (cfg.arch.empty()) {
    x = load_photographs(files, cfg.size);
    r.source = "pixels";
  } else {
    x = layer_input(cfg, files, log);
    if (x.size(1) > cfg.max_channels) x = x.slice(1, 0, cfg.max_channels).contiguous();
    r.source = cfg.arch + " " + cfg.layer + " input";
  }
  r.images = x.size(0), r.channels = x.size(1), r.height = x.size(2), r.width = x.size(3);
  log << "nd-viz: " << r.source << ", " << r.images << " image(s) of " << r.channels << "x"
      << r.height << "x" << r.width << ", " << cfg.kernel << "x" << cfg.kernel << " patches\n";
  r.whitening = whiten_patches(x, cfg.kernel, cfg.deconv_iter, cfg.eps);
  fs::create_directories(cfg.output);
  const std::string dir = cfg.output;
  std::vector<std::string> written;
  auto add = [&](const std::vector<std::string>& names) {
    written.insert(written.end(), names.begin(), names.end());
  };
  {
    const Tensor rows = patch_rows(x, cfg.kernel);
    const Tensor before = correlation(rows);
    const Tensor after = correlation(deconvolve_rows(rows, r.whitening));
    r.before = off_diagonal(before);
    r.after = off_diagonal(after);
    if (wants(cfg, 1)) add(write_fig1(dir, before, after, r.channels, cfg.kernel));
  }
  const DeconvKernels kernels = deconvolution_kernels(r.whitening);
  r.centre_min = INFINITY, r.surround_max = -INFINITY;
  for (int64_t o = 0; o < r.channels; ++o) {
    const CentreSurround cs = centre_surround(kernels.weight, o);
    r.centre_min = std::min(r.centre_min, cs.centre);
    r.surround_max = std::max(r.surround_max, cs.surround);
  }
  if (wants(cfg, 2)) add(write_fig2(dir, kernels));
  const Tensor deconvolved = deconvolve_image(x, r.whitening);
  const int64_t half = cfg.kernel / 2;
  const Tensor inner = x.slice(2, half, half + deconvolved.size(2))
                           .slice(3, half, half + deconvolved.size(3))
                           .contiguous();
  const std::vector<double> before = standardised_values(inner);
  const std::vector<double> after = standardised_values(deconvolved);
  r.kurtosis_before = kurtosis(before);
  r.kurtosis_after = kurtosis(after);
  if (wants(cfg, 4)) add(write_fig4(dir, x, deconvolved, cfg.arch.empty()));
  if (wants(cfg, 5)) add(write_fig5(dir, before, after));

  std::string figures;
  for (int f : cfg.figures) figures += (figures.empty() ? "" : " ") + std::to_string(f);
  std::ostringstream s;
  s << std::setprecision(9) << "key,value\n"
    << "source," << r.source << "\nfigures," << figures << "\nimages," << r.images << "\nchannels,"
    << r.channels << "\nheight," << r.height << "\nwidth," << r.width << "\nkernel," << cfg.kernel
    << "\nfeatures," << r.whitening.nf() << "\npatches," << r.whitening.patches << "\ndeconv_iter,"
    << cfg.deconv_iter << "\neps," << cfg.eps << "\nkernel_tiles,"
    << std::min(r.channels, kMaxKernelTiles) << "\nkernel_colour_column,"
    << (r.channels == 3 ? 1 : 0) << "\noffdiag_max_before," << r.before.max_abs
    << "\noffdiag_mean_before," << r.before.mean_abs << "\noffdiag_max_after," << r.after.max_abs
    << "\noffdiag_mean_after," << r.after.mean_abs << "\nkernel_centre_min," << r.centre_min
    << "\nkernel_surround_max," << r.surround_max << "\nkurtosis_before," << r.kurtosis_before
    << "\nkurtosis_after," << r.kurtosis_after << "\n";
  io::write_file_atomic(dir + "/summary.csv", s.str());
  log << std::setprecision(4) << "nd-viz: patch correlation off the diagonal, max |r| "
      << r.before.max_abs << " -> " << r.after.max_abs << ", mean |r| " << r.before.mean_abs
      << " -> " << r.after.mean_abs << "; kurtosis " << r.kurtosis_before << " -> "
      << r.kurtosis_after << "; wrote " << written.size() + 1 << " files to " << dir << "\n";
  return r;
}

}  // namespace nd::viz
