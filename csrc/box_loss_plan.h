// Argument parsing, validation and output allocation of box_loss, box_loss_backward, box_iou
// and box_iou_backward, shared by the CPU and CUDA launchers: the one place these ops check
// their arguments (the Python wrappers check nothing the C++ checks here again).
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <type_traits>

#include "alwa/box_math.h"
#include "common/backend.h"
#include "common/checks.h"

namespace alwa {

// The names of the kinds and formats tables (alwa/kinds.h), parsed: errors name the argument.
inline LossKind parse_loss_kind(const std::string& name) {
  return parse_enum<LossKind>("loss", name, kLossKindNames);
}
inline BoxFormat parse_box_format(const std::string& name) {
  return parse_enum<BoxFormat>("box_format", name, kBoxFormatNames);
}
// box_iou's kinds (those with a pairwise form) and formats (deltas need anchors, which
// box_iou has not).
inline LossKind parse_iou_kind(const std::string& name) {
  return static_cast<LossKind>(parse_choice("kind", name, kLossKindNames, kNumPairwiseKinds));
}
inline BoxFormat parse_iou_box_format(const std::string& name) {
  return static_cast<BoxFormat>(
      parse_choice("box_format", name, kBoxFormatNames, kNumPairwiseFormats));
}

// box_loss's parameters in schema order, and the same names passing them on. Every form of
// the op (box_loss, box_loss_with_grad, box_loss_backward), every backend and the autograd take
// them: they are written once, here.
#define ALWA_BOX_LOSS_PARAMS                                                                    \
  const at::Tensor &pred, const at::Tensor &target, const std::optional<at::Tensor> &weight,    \
      const std::optional<at::Tensor> &avg_factor, const std::optional<at::Tensor> &anchors,    \
      const std::string &loss, const std::string &reduction, const std::string &box_format,     \
      double eps, double beta, double alpha, double focal_gamma,                                \
      at::ArrayRef<double> delta_means, at::ArrayRef<double> delta_stds, double wh_ratio_clip
#define ALWA_BOX_LOSS_ARGS                                                                      \
  pred, target, weight, avg_factor, anchors, loss, reduction, box_format, eps, beta, alpha,     \
      focal_gamma, delta_means, delta_stds, wh_ratio_clip

// The operators' C++ signatures (alwa.cpp has their schemas).
using BoxLossFn = at::Tensor(ALWA_BOX_LOSS_PARAMS);
using BoxLossWithGradFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(ALWA_BOX_LOSS_PARAMS,
                                                                          bool grad_pred,
                                                                          bool grad_target);
using BoxLossBackwardFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor& grad_loss,
                                                             ALWA_BOX_LOSS_PARAMS, bool grad_pred,
                                                             bool grad_target);

// Everything a box_loss kernel needs to know, decided on the host from shapes and arguments.
struct BoxLossPlan {
  LossKind kind;
  Reduction reduction;
  BoxFormat format;
  double eps;
  double beta;
  double alpha;        // Alpha-IoU power (iou, giou, diou, ciou); 1 = plain
  double focal_gamma;  // Focal-EIoU power (eiou); 0 = none
  std::array<double, 4> delta_means;
  std::array<double, 4> delta_stds;
  double max_log_ratio;  // |log(wh_ratio_clip)|
  int64_t num_boxes;
  bool weight_per_coord;  // weight has shape (..., 4) rather than (...)
  // "mean" without avg_factor divides by the element count; with avg_factor the kernel
  // divides by (avg_factor + kAvgFactorEps) read from the tensor itself (no host sync on CUDA).
  double scale;
  // Inputs as the kernels read them: contiguous; weight and anchors in pred's dtype; avg_factor
  // a float64 0-dim tensor on pred's device. Undefined where not given or not used.
  at::Tensor pred, target, weight, anchors, avg_factor;
  // box_loss_backward: the gradient of the output w.r.t. the loss, contiguous.
  at::Tensor upstream;
  bool grad_pred;
  bool grad_target;
  // Outputs: the loss (per element for "none", 0-dim otherwise; undefined in the backward)
  // and, when asked for, the gradients w.r.t. pred and target (else empty tensors).
  at::Tensor loss;
  at::Tensor grad_pred_out;
  at::Tensor grad_target_out;
};

// Validates box_loss's inputs (shapes, dtypes, devices, strings, numbers) and allocates its
// outputs.
BoxLossPlan plan_box_loss(ALWA_BOX_LOSS_PARAMS, bool grad_pred, bool grad_target);

// The same for box_loss_backward, whose first argument is d output / d loss (the loss's shape).
BoxLossPlan plan_box_loss_backward(const at::Tensor& grad_loss, ALWA_BOX_LOSS_PARAMS,
                                   bool grad_pred, bool grad_target);

// The box_loss operators of a backend, made from its function that runs a plan (which also
// fills the outputs of an empty call) and the guard it needs around a call (CUDAGuard).

template <void (*Run)(BoxLossPlan&), class DeviceGuard = NoDeviceGuard>
struct BoxLossOps {
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> with_grad(ALWA_BOX_LOSS_PARAMS,
                                                                  bool grad_pred,
                                                                  bool grad_target) {
    const DeviceGuard guard(pred.device());
    BoxLossPlan plan = plan_box_loss(ALWA_BOX_LOSS_ARGS, grad_pred, grad_target);
    Run(plan);
    return {plan.loss, plan.grad_pred_out, plan.grad_target_out};
  }
  static at::Tensor loss_only(ALWA_BOX_LOSS_PARAMS) {
    return std::get<0>(with_grad(ALWA_BOX_LOSS_ARGS, false, false));
  }
  static std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_loss,
                                                     ALWA_BOX_LOSS_PARAMS, bool grad_pred,
                                                     bool grad_target) {
    const DeviceGuard guard(pred.device());
    BoxLossPlan plan = plan_box_loss_backward(grad_loss, ALWA_BOX_LOSS_ARGS, grad_pred, grad_target);
    Run(plan);
    return {plan.grad_pred_out, plan.grad_target_out};
  }
};

// The kernel arguments of a planned call.
template <class scalar_t, class T>
BoxLossArgs<scalar_t, T> make_box_loss_args(const BoxLossPlan& plan) {
  const bool reduce = plan.reduction != Reduction::None;
  BoxLossArgs<scalar_t, T> args;
  args.pred = plan.pred.const_data_ptr<scalar_t>();
  args.target = plan.target.const_data_ptr<scalar_t>();
  args.weight = plan.weight.defined() ? plan.weight.const_data_ptr<scalar_t>() : nullptr;
  args.anchors = plan.anchors.defined() ? plan.anchors.const_data_ptr<scalar_t>() : nullptr;
  args.loss = reduce || !plan.loss.defined() ? nullptr : plan.loss.template mutable_data_ptr<scalar_t>();
  args.grad_pred = plan.grad_pred ? plan.grad_pred_out.template mutable_data_ptr<scalar_t>() : nullptr;
  args.grad_target =
      plan.grad_target ? plan.grad_target_out.template mutable_data_ptr<scalar_t>() : nullptr;
  args.upstream = plan.upstream.defined() ? plan.upstream.const_data_ptr<scalar_t>() : nullptr;
  args.num_boxes = plan.num_boxes;
  args.format = plan.format;
  args.weight_per_coord = plan.weight_per_coord;
  args.iou.eps = static_cast<T>(plan.eps);
  args.iou.alpha = static_cast<T>(plan.alpha);
  args.iou.alpha_power = plan.alpha != 1.0;
  args.iou.focal_gamma = static_cast<T>(plan.focal_gamma);
  args.iou.focal = plan.focal_gamma != 0.0;
  args.beta = static_cast<T>(plan.beta);
  for (int k = 0; k < 4; ++k) {
    args.deltas.means[k] = static_cast<T>(plan.delta_means[k]);
    args.deltas.stds[k] = static_cast<T>(plan.delta_stds[k]);
  }
  args.deltas.max_log_ratio = static_cast<T>(plan.max_log_ratio);
  args.grad_scale = static_cast<T>(plan.scale);
  args.avg_factor = plan.avg_factor.defined() ? plan.avg_factor.const_data_ptr<double>() : nullptr;
  args.reduce = reduce;
  return args;
}

// A box_iou call, checked, with its (M, N) output allocated and contiguous inputs.
struct BoxIouPlan {
  LossKind kind;  // a kind with a pairwise form
  BoxFormat format;
  int64_t m, n;
  at::Tensor boxes1, boxes2, out;
};
BoxIouPlan plan_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2,
                        const std::string& kind, const std::string& box_format, double eps);

// Validates box_iou's inputs; returns the kind (an IoU-family kind with a pairwise form).
LossKind check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2,
                            const std::string& kind, const std::string& box_format, double eps);
// And box_iou_backward's gradient (shape (M, N), boxes1's dtype and device).
void check_box_iou_grad(const at::Tensor& grad, const at::Tensor& boxes1,
                        const at::Tensor& boxes2);

// Calls f(std::integral_constant<LossKind, kind>{}) so kernels can be templates on the kind.
template <class F>
void dispatch_loss_kind(LossKind kind, F&& f) {
  switch (kind) {
#define ALWA_CASE(k, name, iou_family, alpha_form) \
  case LossKind::k:                                \
    f(std::integral_constant<LossKind, LossKind::k>{}); \
    break;
    ALWA_LOSS_KINDS(ALWA_CASE)
#undef ALWA_CASE
  }
}

// Same for the kinds with a pairwise form (box_iou): the others are never instantiated.
template <class F>
void dispatch_iou_kind(LossKind kind, F&& f) {
  TORCH_CHECK_VALUE(has_alpha_form(kind), "kind: expected one of ",
                    quoted_choices(kLossKindNames, kNumPairwiseKinds));
  dispatch_loss_kind(kind, [&](auto kind_constant) {
    if constexpr (has_alpha_form(decltype(kind_constant)::value)) f(kind_constant);
  });
}

// Registers a backend's box operators: the three forms of box_loss (BoxLossOps) and box_iou
// with its backward.
template <class Ops, class BoxIou, class BoxIouBackward>
void register_box_ops(torch::Library& m, BoxIou box_iou, BoxIouBackward box_iou_backward) {
  m.impl("box_loss", &Ops::loss_only);
  m.impl("box_loss_with_grad", &Ops::with_grad);
  m.impl("box_loss_backward", &Ops::backward);
  m.impl("box_iou", box_iou);
  m.impl("box_iou_backward", box_iou_backward);
}

}  // namespace alwa
