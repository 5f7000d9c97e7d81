// The one dispatch point of the engine: ops:: checks shapes, dtypes and devices, calls the CPU
// reference or the CUDA kernel of the family (never silently falling back to the CPU), and
// records the backward for autograd. CPU ops take float32 or float64; CUDA ops float32. Its
// arguments are engine types; each ops_*.cpp builds the kernel's view of them.
#pragma once
#include <utility>
#include <vector>

#include "core/optimizer_config.h"
#include "engine/autograd.h"
#include "engine/tensor.h"

namespace nd::ops {

// ---- elementwise (binary ops broadcast like NumPy)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
enum class UnaryOp { Relu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Square, Silu, Abs };
Tensor unary(UnaryOp op, const Tensor& x);
inline Tensor relu(const Tensor& x) {
  return unary(UnaryOp::Relu, x);
}
inline Tensor sigmoid(const Tensor& x) {
  return unary(UnaryOp::Sigmoid, x);
}
inline Tensor tanh(const Tensor& x) {
  return unary(UnaryOp::Tanh, x);
}
inline Tensor exp(const Tensor& x) {
  return unary(UnaryOp::Exp, x);
}
inline Tensor log(const Tensor& x) {
  return unary(UnaryOp::Log, x);
}
inline Tensor sqrt(const Tensor& x) {
  return unary(UnaryOp::Sqrt, x);
}
inline Tensor neg(const Tensor& x) {
  return unary(UnaryOp::Neg, x);
}
inline Tensor square(const Tensor& x) {
  return unary(UnaryOp::Square, x);
}
inline Tensor silu(const Tensor& x) {
  return unary(UnaryOp::Silu, x);
}
inline Tensor abs(const Tensor& x) {
  return unary(UnaryOp::Abs, x);
}
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Sums a broadcast gradient back to `shape` (the backward of broadcasting).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast copy

// ---- reductions
Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements -> scalar (shape {})
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor argmax(const Tensor& x);  // (rows, cols) -> int64 (rows); not differentiable

// ---- matmul
Tensor matmul(const Tensor& a, const Tensor& b);  // (m,k)x(k,n) or batched (B,m,k)x(B,k,n)
// y = x w^T + b; x (N, in), w (out, in), b (out) or undefined
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);

// ---- convolution
struct Conv2dParams {
  int64_t stride = 1, padding = 0, dilation = 1, groups = 1;
};
// x (N, C, H, W), w (O, C/groups, kh, kw), b (O) or undefined -> (N, O, Ho, Wo)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p);
// x (N, C, H, W) -> (N, C*kh*kw, Ho*Wo); backward is col2im
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, const Conv2dParams& p);

// ---- losses (mean over the batch); labels int64 (N) in [0, K)
// cross entropy = mean_n(logsumexp(z_n) - z_n[label_n]); L2 = mean_n(0.5 |z_n - onehot(label_n)|^2)
enum class LossKind { CrossEntropy, L2 };
Tensor loss(LossKind kind, const Tensor& logits, const Tensor& labels);
inline Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  return loss(LossKind::CrossEntropy, logits, labels);
}
inline Tensor l2_loss(const Tensor& logits, const Tensor& labels) {
  return loss(LossKind::L2, logits, labels);
}
// Number of rows whose argmax equals the label.
int64_t count_correct(const Tensor& logits, const Tensor& labels);

// ---- batch norm over (N, C) or (N, C, spatial...); gamma/beta/running_* may be undefined.
// Training uses batch statistics and updates the running buffers in place.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps);

// ---- pooling (PyTorch semantics, no ceil_mode); x (N, C, H, W) -> (N, C, Ho, Wo) with
// Ho = (H + 2 * padding - kernel) / stride + 1. stride 0 means stride = kernel (PyTorch's
// default); padding may be at most kernel / 2. Max pooling pads with -inf and sends each gradient
// to the first maximum of its window; average pooling divides by kernel * kernel, padded zeros
// included (count_include_pad=True).
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// x (N, C, H, W) -> (N, C, out_h, out_w): mean over PyTorch's bins, rows [floor(i * H / out_h),
// ceil((i + 1) * H / out_h)) and likewise for columns; (1, 1) is global average pooling.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// ---- shape ops
// Concatenates along `dim`; all other dims must agree.
Tensor cat(const std::vector<Tensor>& parts, int64_t dim);
Tensor eye(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());

// ---- fused network deconvolution (kernels/deconv.h; the composite oracle is in layers/)
// How a deconvolution layer samples the patches of its input (the rules are those of the
// kernels' SampledCovShape, kernels/deconv.h): k x k patches (padding, dilation) at output-grid
// stride `stride` (for kernel 1: every stride^2-th NHWC row from `first`), each split into
// C / block sub-rows of nf = k*k*block features (groups == 1), or one matrix per group
// (block = C / groups).
struct PatchSampling {
  int64_t kernel = 1, padding = 0, dilation = 1;
  int64_t stride = 1;  // the effective sampling stride
  int64_t block = 1;   // already resolved by the gcd/groups rules (divides C)
  int64_t groups = 1;
  int64_t first = 0;  // kernel 1: the first sampled raster row, 0 <= first < stride^2
};
// For input shape x (N, C, H, W): the sampled patch positions and the rows R that each covariance
// averages over.
struct SampledCount {
  int64_t positions = 0, rows = 0;
};
SampledCount sampled_count(const Shape& x, const PatchSampling& s);
// x (N, C, H, W) -> mean (groups, nf), cov (groups, nf, nf) of the sampled patches.
std::pair<Tensor, Tensor> sampled_covariance(const Tensor& x, const PatchSampling& s, double eps);
// x (rows, n) -> mean (n), cov (n, n) = Xc^T Xc / rows + eps I.
std::pair<Tensor, Tensor> rows_covariance(const Tensor& x, double eps);
// a (count, n, n) -> the coupled Newton-Schulz approximation of a^(-1/2) after `iters` steps.
Tensor newton_schulz(const Tensor& a, int64_t iters);
// The weights to fold: O output rows of blocks * nf elements (groups == 1: element f of a row in
// block f % blocks; groups > 1: one block, output o using matrix o / (O / groups)).
struct FoldLayout {
  int64_t outputs = 1, features = 1, blocks = 1, groups = 1;  // O, nf, blocks, groups
};
// w (O, ...) with O * blocks * nf elements, bias (O) or undefined, d (groups, nf, nf), mu
// (groups, nf) -> folded weight (shape of w) and bias (O).
std::pair<Tensor, Tensor> fold(const Tensor& w, const Tensor& bias, const Tensor& d,
                               const Tensor& mu, const FoldLayout& l);

// ---- raw copies (outside autograd; Tensor's contiguous(), clone(), copy_(), fill_() and to()
// are built on them). Any dtype.
// src (any strides) -> dst (contiguous, same shape, device and dtype).
void copy_to_contiguous(const Tensor& src, const Tensor& dst);
// src (contiguous) -> dst (a strided view of the same shape, device and dtype).
void copy_from_contiguous(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);       // dst contiguous
void cast(const Tensor& src, const Tensor& dst);  // both contiguous, same device and shape
// src -> dst, both contiguous, same dtype and shape, on different devices. To a GPU the copy
// runs on the device's copy stream from pinned memory (pageable sources are staged in pinned
// memory first), after the compute stream's queued work, and the compute stream waits for it:
// the host never waits. From a GPU it waits for the copy (the caller reads the result).
void transfer(const Tensor& src, const Tensor& dst);

// ---- optimizers (in place, no autograd; PyTorch's semantics, kernels/optimizer.h)
using nd::AdamConfig;  // core/optimizer_config.h
using nd::SgdConfig;
void sgd_step(const SgdConfig& c, Tensor& param, const Tensor& grad, Tensor& buf);
void adam_step(const AdamConfig& c, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v);

}  // namespace nd::ops

namespace nd {
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return ops::add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return ops::sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return ops::mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return ops::div(a, b);
}
inline Tensor operator*(const Tensor& a, double s) {
  return ops::affine(a, s, 0);
}
inline Tensor operator*(double s, const Tensor& a) {
  return ops::affine(a, s, 0);
}
inline Tensor operator+(const Tensor& a, double s) {
  return ops::affine(a, 1, s);
}
inline Tensor operator-(const Tensor& a) {
  return ops::neg(a);
}
}  // namespace nd
