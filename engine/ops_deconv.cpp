// ops:: the fused network-deconvolution kernels (sampled covariance, covariance of rows,
// Newton-Schulz inverse square root, weight folding) with their hand-derived backwards.
#include "engine/cpu_backend.h"
#include "engine/device_scratch.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/deconv.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {
// The covariances run on BLAS unless the reference loops are selected (cpu_backend.h).
bool use_blas() {
  return cpu_deconv_path() == CpuDeconvPath::Blas;
}

// The kernels' view of sampling `p` over an input of shape x (N, C, H, W).
kernels::SampledCovShape cov_shape(const Shape& x, const PatchSampling& p, const char* who) {
  ND_CHECK(x.size() == 4, who, ": input ", shape_str(x), " is not (N, C, H, W)");
  kernels::SampledCovShape s;
  s.n = x[0], s.c = x[1], s.h = x[2], s.w = x[3];
  s.k = p.kernel, s.pad = p.padding, s.dil = p.dilation;
  s.stride = p.stride, s.block = p.block, s.groups = p.groups, s.first = p.first;
  return s;
}
}  // namespace

SampledCount sampled_count(const Shape& x, const PatchSampling& p) {
  const kernels::SampledCovShape s = cov_shape(x, p, "sampled_count");
  return {s.positions(), s.rows()};
}

std::pair<Tensor, Tensor> sampled_covariance(const Tensor& x_in, const PatchSampling& p,
                                             double eps) {
  const kernels::SampledCovShape s = cov_shape(x_in.shape(), p, "sampled_covariance");
  ND_CHECK(s.block >= 1 && s.c % s.block == 0 && s.groups >= 1 &&
               (s.groups == 1 || s.block * s.groups == s.c),
           "sampled_covariance: block ", s.block, " and groups ", s.groups, " do not fit ", s.c,
           " channels");
  ND_CHECK(s.positions() >= 1, "sampled_covariance: no sampled positions");
  Tensor x = x_in.contiguous();
  const int64_t g = s.matrices(), nf = s.nf();
  Tensor mean = Tensor::empty({g, nf}, x.dtype(), x.device());
  Tensor cov = Tensor::empty({g, nf, nf}, x.dtype(), x.device());
  dispatch(
      "sampled_covariance", x,
      [&](auto tag) {
        using T = decltype(tag);
        if (use_blas()) {
          DeviceScratch scratch(x.device());
          kernels::covariance_sampled_forward_blas<T>(s, eps, ptr<T>(x), ptr<T>(mean), ptr<T>(cov),
                                                      scratch);
        } else {
          kernels::covariance_sampled_forward_cpu<T>(s, eps, ptr<T>(x), ptr<T>(mean), ptr<T>(cov));
        }
      },
      [&](auto stream) {
        DeviceScratch scratch(x.device());
        kernels::covariance_sampled_forward_cuda(s, eps, ptr<float>(x), ptr<float>(mean),
                                                 ptr<float>(cov), scratch, stream);
      });
  Tensor xd = x.detach(), md = mean.detach();
  auto outs = record_multi(
      {mean, cov}, {x_in}, "sampled_covariance", [s, xd, md](const std::vector<Tensor>& grads) {
        Tensor dmean = grads[0].defined() ? grads[0].contiguous() : Tensor();
        Tensor dcov = grads[1].defined()
                          ? grads[1].contiguous()
                          : Tensor::zeros({s.matrices(), s.nf(), s.nf()}, xd.dtype(), xd.device());
        Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
        dispatch(
            "sampled_covariance backward", xd,
            [&](auto tag) {
              using T = decltype(tag);
              if (use_blas()) {
                DeviceScratch scratch(xd.device());
                kernels::covariance_sampled_backward_blas<T>(
                    s, ptr<T>(xd), ptr<T>(md), ptr<T>(dmean), ptr<T>(dcov), ptr<T>(dx), scratch);
              } else {
                kernels::covariance_sampled_backward_cpu<T>(
                    s, ptr<T>(xd), ptr<T>(md), ptr<T>(dmean), ptr<T>(dcov), ptr<T>(dx));
              }
            },
            [&](auto stream) {
              DeviceScratch scratch(xd.device());
              kernels::covariance_sampled_backward_cuda(s, ptr<float>(xd), ptr<float>(md),
                                                        ptr<float>(dmean), ptr<float>(dcov),
                                                        ptr<float>(dx), scratch, stream);
            });
        return std::vector<Tensor>{dx};
      });
  return {outs[0], outs[1]};
}

std::pair<Tensor, Tensor> rows_covariance(const Tensor& x_in, double eps) {
  ND_CHECK(x_in.dim() == 2 && x_in.shape()[0] >= 1, "rows_covariance: expected (rows, n), got ",
           shape_str(x_in.shape()));
  Tensor x = x_in.contiguous();
  const int64_t rows = x.shape()[0], n = x.shape()[1];
  Tensor mean = Tensor::empty({n}, x.dtype(), x.device());
  Tensor cov = Tensor::empty({n, n}, x.dtype(), x.device());
  dispatch(
      "rows_covariance", x,
      [&](auto tag) {
        using T = decltype(tag);
        if (use_blas()) {
          DeviceScratch scratch(x.device());
          kernels::covariance_rows_forward_blas<T>(rows, n, eps, ptr<T>(x), ptr<T>(mean),
                                                   ptr<T>(cov), scratch);
        } else {
          kernels::covariance_rows_forward_cpu<T>(rows, n, eps, ptr<T>(x), ptr<T>(mean),
                                                  ptr<T>(cov));
        }
      },
      [&](auto stream) {
        DeviceScratch scratch(x.device());
        kernels::covariance_rows_forward_cuda(rows, n, eps, ptr<float>(x), ptr<float>(mean),
                                              ptr<float>(cov), scratch, stream);
      });
  Tensor xd = x.detach(), md = mean.detach();
  auto outs = record_multi(
      {mean, cov}, {x_in}, "rows_covariance", [xd, md, rows, n](const std::vector<Tensor>& grads) {
        Tensor dmean = grads[0].defined() ? grads[0].contiguous() : Tensor();
        Tensor dcov = grads[1].defined() ? grads[1].contiguous()
                                         : Tensor::zeros({n, n}, xd.dtype(), xd.device());
        Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
        dispatch(
            "rows_covariance backward", xd,
            [&](auto tag) {
              using T = decltype(tag);
              if (use_blas()) {
                DeviceScratch scratch(xd.device());
                kernels::covariance_rows_backward_blas<T>(rows, n, ptr<T>(xd), ptr<T>(md),
                                                          ptr<T>(dmean), ptr<T>(dcov), ptr<T>(dx),
                                                          scratch);
              } else {
                kernels::covariance_rows_backward_cpu<T>(rows, n, ptr<T>(xd), ptr<T>(md),
                                                         ptr<T>(dmean), ptr<T>(dcov), ptr<T>(dx));
              }
            },
            [&](auto stream) {
              DeviceScratch scratch(xd.device());
              kernels::covariance_rows_backward_cuda(rows, n, ptr<float>(xd), ptr<float>(md),
                                                     ptr<float>(dmean), ptr<float>(dcov),
                                                     ptr<float>(dx), scratch, stream);
            });
        return std::vector<Tensor>{dx};
      });
  return {outs[0], outs[1]};
}

Tensor newton_schulz(const Tensor& a_in, int64_t iters) {
  ND_CHECK(a_in.dim() == 3 && a_in.shape()[1] == a_in.shape()[2],
           "newton_schulz: expected (count, n, n), got ", shape_str(a_in.shape()));
  ND_CHECK(iters >= 1, "newton_schulz: iterations must be >= 1, got ", iters);
  Tensor a = a_in.contiguous();
  const int64_t count = a.shape()[0], n = a.shape()[1];
  Tensor d = Tensor::empty(a.shape(), a.dtype(), a.device());
  Tensor saved =
      Tensor::empty({kernels::newton_schulz_saved_elems(count, n, iters)}, a.dtype(), a.device());
  dispatch(
      "newton_schulz", a,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::newton_schulz_forward_cpu<T>(count, n, iters, ptr<T>(a), ptr<T>(d), ptr<T>(saved));
      },
      [&](auto stream) {
        DeviceScratch scratch(a.device());
        kernels::newton_schulz_forward_cuda(count, n, iters, ptr<float>(a), ptr<float>(d),
                                            ptr<float>(saved), scratch, stream);
      });
  if (!any_requires_grad({&a_in})) return d;
  Tensor ad = a.detach();
  return record(d, {a_in}, "newton_schulz", [ad, saved, count, n, iters](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor da = Tensor::empty(ad.shape(), ad.dtype(), ad.device());
    dispatch(
        "newton_schulz backward", ad,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::newton_schulz_backward_cpu<T>(count, n, iters, ptr<T>(ad), ptr<T>(saved),
                                                 ptr<T>(g), ptr<T>(da));
        },
        [&](auto stream) {
          DeviceScratch scratch(ad.device());
          kernels::newton_schulz_backward_cuda(count, n, iters, ptr<float>(ad), ptr<float>(saved),
                                               ptr<float>(g), ptr<float>(da), scratch, stream);
        });
    return std::vector<Tensor>{da};
  });
}

std::pair<Tensor, Tensor> fold(const Tensor& w_in, const Tensor& bias, const Tensor& d_in,
                               const Tensor& mu_in, const FoldLayout& l) {
  kernels::FoldShape s;
  s.o = l.outputs, s.nf = l.features, s.blocks = l.blocks, s.groups = l.groups;
  detail::check_same_device("fold", {&w_in, &bias, &d_in, &mu_in});
  ND_CHECK(w_in.numel() == s.o * s.row() && d_in.numel() == s.groups * s.nf * s.nf &&
               mu_in.numel() == s.groups * s.nf && (!bias.defined() || bias.numel() == s.o),
           "fold: weight ", shape_str(w_in.shape()), ", matrices ", shape_str(d_in.shape()),
           " and mean ", shape_str(mu_in.shape()), " do not fit ", s.o, " outputs of ", s.blocks,
           " blocks of ", s.nf);
  ND_CHECK(s.groups == 1 || (s.blocks == 1 && s.o % s.groups == 0),
           "fold: grouped folding needs one block and outputs divisible by groups");
  Tensor w = w_in.contiguous(), d = d_in.contiguous(), mu = mu_in.contiguous();
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  Tensor w_out = Tensor::empty(w.shape(), w.dtype(), w.device());
  Tensor b_out = Tensor::empty({s.o}, w.dtype(), w.device());
  dispatch(
      "fold", w,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::fold_forward_cpu<T>(s, ptr<T>(w), ptr<T>(b), ptr<T>(d), ptr<T>(mu), ptr<T>(w_out),
                                     ptr<T>(b_out));
      },
      [&](auto stream) {
        DeviceScratch scratch(w.device());
        kernels::fold_forward_cuda(s, ptr<float>(w), ptr<float>(b), ptr<float>(d), ptr<float>(mu),
                                   ptr<float>(w_out), ptr<float>(b_out), scratch, stream);
      });
  std::vector<Tensor> inputs{w_in, d_in, mu_in};
  if (bias.defined()) inputs.push_back(bias);
  Tensor wd = w.detach(), dd = d.detach(), mud = mu.detach(), wod = w_out.detach();
  auto outs = record_multi(
      {w_out, b_out}, inputs, "fold", [s, wd, dd, mud, wod](const std::vector<Tensor>& grads) {
        Tensor dw_out = grads[0].defined() ? grads[0].contiguous()
                                           : Tensor::zeros(wd.shape(), wd.dtype(), wd.device());
        Tensor db_out = grads[1].defined() ? grads[1].contiguous()
                                           : Tensor::zeros({s.o}, wd.dtype(), wd.device());
        Tensor dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
        Tensor ddm = Tensor::empty(dd.shape(), dd.dtype(), dd.device());
        Tensor dmu = Tensor::empty(mud.shape(), mud.dtype(), mud.device());
        dispatch(
            "fold backward", wd,
            [&](auto tag) {
              using T = decltype(tag);
              kernels::fold_backward_cpu<T>(s, ptr<T>(wd), ptr<T>(dd), ptr<T>(mud), ptr<T>(wod),
                                            ptr<T>(dw_out), ptr<T>(db_out), ptr<T>(dw), ptr<T>(ddm),
                                            ptr<T>(dmu));
            },
            [&](auto stream) {
              DeviceScratch scratch(wd.device());
              kernels::fold_backward_cuda(s, ptr<float>(wd), ptr<float>(dd), ptr<float>(mud),
                                          ptr<float>(wod), ptr<float>(dw_out), ptr<float>(db_out),
                                          ptr<float>(dw), ptr<float>(ddm), ptr<float>(dmu), scratch,
                                          stream);
            });
        return std::vector<Tensor>{dw, ddm, dmu, db_out};
      });
  return {outs[0], outs[1]};
}

}  // namespace nd::ops
