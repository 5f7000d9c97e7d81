// ops:: losses (softmax cross-entropy, L2 to one-hot) and the count of correct predictions.
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {
kernels::LossKind kernel_loss(LossKind kind) {
  switch (kind) {
    case LossKind::CrossEntropy:
      return kernels::LossKind::CrossEntropy;
    case LossKind::L2:
      return kernels::LossKind::L2;
  }
  ND_FAIL("loss: unknown kind ", int(kind));
}
}  // namespace

Tensor loss(LossKind loss_kind, const Tensor& logits_in, const Tensor& labels_in) {
  const kernels::LossKind kind = kernel_loss(loss_kind);
  ND_CHECK(logits_in.dim() == 2, "loss: logits must be (N, K), got ", shape_str(logits_in.shape()));
  ND_CHECK(labels_in.dtype() == DType::I64 && labels_in.dim() == 1 &&
               labels_in.shape()[0] == logits_in.shape()[0],
           "loss: labels must be int64 (N) with N = ", logits_in.shape()[0], ", got ",
           dtype_name(labels_in.dtype()), " ", shape_str(labels_in.shape()));
  const int64_t n = logits_in.shape()[0], k = logits_in.shape()[1];
  ND_CHECK(n > 0 && k > 0, "loss of an empty batch");
  Tensor labels = labels_in.contiguous();
  if (labels.device().is_cpu()) {
    const int64_t* l = labels.data<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      ND_CHECK(l[i] >= 0 && l[i] < k, "label ", l[i], " at row ", i, " is outside [0, ", k, ")");
  }
  labels = labels.to(logits_in.device());
  Tensor logits = logits_in.contiguous();
  Tensor out = Tensor::empty({}, logits.dtype(), logits.device());
  dispatch(
      "loss", logits,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::loss_forward_cpu<T>(kind, ptr<T>(logits), ptr<int64_t>(labels), n, k, ptr<T>(out));
      },
      [&](auto stream) {
        kernels::loss_forward_cuda(kind, ptr<float>(logits), ptr<int64_t>(labels), n, k,
                                   ptr<float>(out), stream);
      });
  Tensor zd = logits.detach();
  return record(out, {logits_in}, "loss", [kind, zd, labels, n, k](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dz = Tensor::empty(zd.shape(), zd.dtype(), zd.device());
    dispatch(
        "loss backward", zd,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::loss_backward_cpu<T>(kind, ptr<T>(zd), ptr<int64_t>(labels), n, k, ptr<T>(g),
                                        ptr<T>(dz));
        },
        [&](auto stream) {
          kernels::loss_backward_cuda(kind, ptr<float>(zd), ptr<int64_t>(labels), n, k,
                                      ptr<float>(g), ptr<float>(dz), stream);
        });
    return std::vector<Tensor>{dz};
  });
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  ND_CHECK(labels.dim() == 1 && labels.shape()[0] == logits.shape()[0], "count_correct: labels ",
           shape_str(labels.shape()), " for logits ", shape_str(logits.shape()));
  const std::vector<int64_t> pred = argmax(logits.detach()).to_vector<int64_t>();
  const std::vector<int64_t> truth = labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i];
  return correct;
}

}  // namespace nd::ops
