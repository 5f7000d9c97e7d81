// The numbers behind the paper's pre-experiment figures (Ye et al. 2020, Figures 1, 2, 4 and 5),
// computed with the engine's own deconvolution kernels so the figures show what training
// computes: the k x k patches of a signal x (N, C, H, W) (photographs or a layer's input), their
// mean and covariance (ops::sampled_covariance, as FastDeconv takes them, here at stride 1 and
// with the whole C*k*k patch as one block), D = Cov^-1/2 by the coupled Newton-Schulz iteration
// (ops::newton_schulz), and the deconvolved signal as FastDeconv makes it: identity (delta)
// weights folded with D and the mean (ops::fold), then ops::conv2d. Patches lie inside the
// image (no padding), so borders add no zeros to the statistics.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace nd::viz {

// Patch column f = c*k*k + ky*k + kx, as im2col and FastDeconv order them.
struct PatchWhitening {
  int64_t channels = 0, kernel = 0;
  int64_t patches = 0;  // rows the statistics were taken over
  Tensor mean;          // (nf)
  Tensor cov;           // (nf, nf): Xc^T Xc / patches + eps I
  Tensor deconv;        // (nf, nf): the Newton-Schulz approximation of cov^-1/2
  int64_t nf() const { return channels * kernel * kernel; }
};

// x (N, C, H, W) float32 on the CPU; kernel odd and at most the image side.
PatchWhitening whiten_patches(const Tensor& x, int64_t kernel, int64_t iters, double eps);

// Every k x k patch inside the images as a row: (N * (H-k+1) * (W-k+1), C*k*k).
Tensor patch_rows(const Tensor& x, int64_t kernel);
// (rows - mean) D: the deconvolved patches, (R, nf).
Tensor deconvolve_rows(const Tensor& rows, const PatchWhitening& w);

// The correlation matrix (n, n) of the columns of rows (R, n): cov_ij / sqrt(cov_ii cov_jj),
// float64. A constant column gets 0 off the diagonal and 1 on it.
Tensor correlation(const Tensor& rows);
// Pixel-wise correlation (k*k, k*k): the mean over channels c of corr[c k² + i, c k² + j].
Tensor pixelwise_correlation(const Tensor& corr, int64_t channels, int64_t kernel);
// Channel-wise correlation (C, C): the mean over taps t of corr[c k² + t, c' k² + t].
Tensor channelwise_correlation(const Tensor& corr, int64_t channels, int64_t kernel);
struct OffDiagonal {
  double max_abs = 0, mean_abs = 0;  // of corr_ij, i != j
};
OffDiagonal off_diagonal(const Tensor& corr);

// The deconvolution kernels (C, C, k, k): kernel o is D applied to a delta at channel o's centre
// tap (Cov^-1/2 vec(delta)), i.e. the weights FastDeconv's fold gives an identity convolution.
// Also the bias (C) that fold gives (-kernel . mean).
struct DeconvKernels {
  Tensor weight;  // (C, C, k, k)
  Tensor bias;    // (C)
};
DeconvKernels deconvolution_kernels(const PatchWhitening& w);
// The deconvolved signal (N, C, H-k+1, W-k+1): the centre of every whitened patch, computed as
// FastDeconv computes it (conv2d with the folded kernels and bias).
Tensor deconvolve_image(const Tensor& x, const PatchWhitening& w);

// Kernel o's centre weight and the mean of its other k*k - 1 weights in channel o (the
// surround of a centre-surround filter).
struct CentreSurround {
  double centre = 0, surround = 0;
};
CentreSurround centre_surround(const Tensor& kernels, int64_t o);

// Values of x (N, C, H, W) with each channel's mean removed, divided by the standard deviation
// of all of them (float64, flattened).
std::vector<double> standardised_values(const Tensor& x);
// Fourth standardised moment (3 for a Gaussian; larger = more peaked with heavier tails).
double kurtosis(const std::vector<double>& values);
// Density (integrates to the fraction inside the range) over `bins` equal bins of [-range, range].
struct Histogram {
  std::vector<double> centres, density;
};
Histogram histogram(const std::vector<double>& values, int64_t bins, double range);

}  // namespace nd::viz
