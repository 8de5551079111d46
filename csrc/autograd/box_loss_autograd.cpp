// Autograd of box_loss and box_iou, in C++ (registered at the Autograd key, as torchvision
// registers roi_align's): a training call crosses from Python into C++ once, and the backward
// runs without Python. torch.compile traces through these functions to the ops below them,
// whose fake kernels are in alwa_ext/ops.py.
//
// box_loss's gradient is computed in the forward pass, with the loss (box_loss_with_grad), and
// the backward scales it by grad_output in place: the per-box math runs once, and no second
// gradient tensor is allocated (on this CPU a fresh 16 MB tensor costs more in page faults
// than the pass that fills it). Measured against the alternative, a forward that computes the
// loss alone and a fused backward (box_loss_backward) that recomputes and writes the scaled
// gradient once, at N = 2^20 on one thread (docs/benchmarks.md, "Per-call cost"): level for L1, 1.2x faster
// for SmoothL1, 1.3x for GIoU and 1.4x for CIoU. box_loss_backward computes the gradient where
// the forward's cannot be scaled afterwards (coordinate kinds on deltas with reduction "none",
// for the target) and when a retained graph is differentiated a second time.
// Second-order gradients are not supported: asking for one raises instead of returning zeros.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "alwa/kinds.h"
#include "autograd/function_helpers.h"
#include "autograd/reduction_grads.h"
#include "box_loss_plan.h"

namespace alwa {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The non-tensor arguments of a box_loss call, in schema order, the names parsed (the
// autograd decides from the enums, never from the strings): a view of the call's own
// arguments in the forward, of SavedOptions in the backward.
struct BoxLossOptions {
  LossKind kind;
  Reduction reduction;
  BoxFormat format;
  double eps, beta, alpha, focal_gamma;
  at::ArrayRef<double> delta_means, delta_stds;
  double wh_ratio_clip;

  const std::string& loss() const {
    static const auto names = name_strings(kLossKindNames);
    return names[static_cast<int>(kind)];
  }
  const std::string& box_format() const {
    static const auto names = name_strings(kBoxFormatNames);
    return names[static_cast<int>(format)];
  }
};

// The same, kept for the backward in one allocation.
struct SavedOptions : torch::CustomClassHolder {
  LossKind kind;
  Reduction reduction;
  BoxFormat format;
  double eps, beta, alpha, focal_gamma, wh_ratio_clip;
  std::array<double, 4> delta_means, delta_stds;

  BoxLossOptions view() const {
    return BoxLossOptions{kind, reduction, format, eps, beta, alpha, focal_gamma,
                          delta_means, delta_stds, wh_ratio_clip};
  }
};

c10::intrusive_ptr<SavedOptions> save(const BoxLossOptions& o) {
  auto saved = c10::make_intrusive<SavedOptions>();
  saved->kind = o.kind;
  saved->reduction = o.reduction;
  saved->format = o.format;
  saved->eps = o.eps;
  saved->beta = o.beta;
  saved->alpha = o.alpha;
  saved->focal_gamma = o.focal_gamma;
  saved->wh_ratio_clip = o.wh_ratio_clip;
  std::copy(o.delta_means.begin(), o.delta_means.end(), saved->delta_means.begin());
  std::copy(o.delta_stds.begin(), o.delta_stds.end(), saved->delta_stds.begin());
  return saved;
}

// ----------------------------------------------------------------------------- the ops below

at::Tensor call_box_loss(const at::Tensor& pred, const at::Tensor& target,
                         const std::optional<at::Tensor>& weight,
                         const std::optional<at::Tensor>& avg_factor,
                         const std::optional<at::Tensor>& anchors, const BoxLossOptions& o,
                         Reduction reduction) {
  static auto op = find_op<BoxLossFn>("alwa::box_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(pred, target, weight, avg_factor, anchors, o.loss(), reduction_name(reduction),
                 o.box_format(),
                 o.eps, o.beta, o.alpha, o.focal_gamma, o.delta_means, o.delta_stds,
                 o.wh_ratio_clip);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_box_loss_with_grad(
    const at::Tensor& pred, const at::Tensor& target, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& avg_factor, const std::optional<at::Tensor>& anchors,
    const BoxLossOptions& o, bool grad_pred, bool grad_target) {
  static auto op = find_op<BoxLossWithGradFn>("alwa::box_loss_with_grad");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(pred, target, weight, avg_factor, anchors, o.loss(), reduction_name(o.reduction),
                 o.box_format(), o.eps, o.beta, o.alpha, o.focal_gamma, o.delta_means,
                 o.delta_stds, o.wh_ratio_clip, grad_pred, grad_target);
}

std::tuple<at::Tensor, at::Tensor> call_box_loss_backward(
    const at::Tensor& grad_loss, const at::Tensor& pred, const at::Tensor& target,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& avg_factor,
    const std::optional<at::Tensor>& anchors, const BoxLossOptions& o, bool grad_pred,
    bool grad_target) {
  static auto op = find_op<BoxLossBackwardFn>("alwa::box_loss_backward");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(grad_loss, pred, target, weight, avg_factor, anchors, o.loss(),
                 reduction_name(o.reduction), o.box_format(), o.eps, o.beta, o.alpha,
                 o.focal_gamma, o.delta_means, o.delta_stds, o.wh_ratio_clip, grad_pred,
                 grad_target);
}

// ----------------------------------------------------------------------------- box_loss

// Whether the gradient of the forward pass can be scaled into the vector-Jacobian product
// afterwards: always, but for coordinate kinds on deltas with reduction "none", whose target
// gradient mixes the four coordinates (through the encoding) after the per-element upstream
// gradient must have been applied.
bool gradient_in_forward(const BoxLossOptions& o, bool need_target) {
  return !(!is_iou_family(o.kind) && need_target && o.format == BoxFormat::Deltas &&
           o.reduction == Reduction::None);
}
class BoxLossFunction : public torch::autograd::Function<BoxLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& pred,
                               const at::Tensor& target, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& avg_factor,
                               const std::optional<at::Tensor>& anchors, BoxLossOptions options) {
    const bool need_pred = pred.requires_grad(), need_target = target.requires_grad();
    const bool need_avg_factor = avg_factor.has_value() && avg_factor->requires_grad();
    at::Tensor loss;
    if ((need_pred || need_target) && gradient_in_forward(options, need_target)) {
      at::Tensor grad_pred, grad_target;
      std::tie(loss, grad_pred, grad_target) = call_box_loss_with_grad(
          pred, target, weight, avg_factor, anchors, options, need_pred, need_target);
      // Kept out of save_for_backward: they are ours alone, so backward may scale them in place.
      if (need_pred) ctx->saved_data["grad_pred"] = grad_pred;
      if (need_target) ctx->saved_data["grad_target"] = grad_target;
    } else {
      loss = call_box_loss(pred, target, weight, avg_factor, anchors, options, options.reduction);
    }
    ctx->save_for_backward({pred, target, weight.value_or(at::Tensor()),
                            avg_factor.value_or(at::Tensor()), anchors.value_or(at::Tensor()),
                            need_avg_factor ? loss : at::Tensor()});
    ctx->saved_data["options"] = c10::IValue::make_capsule(save(options));
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &pred = saved[0], &target = saved[1], &weight = saved[2];
    const at::Tensor &avg_factor = saved[3], &anchors = saved[4], &loss_out = saved[5];
    const auto saved_options =
        c10::static_intrusive_pointer_cast<SavedOptions>(ctx->saved_data["options"].toCapsule());
    const BoxLossOptions o = saved_options->view();
    const at::Tensor grad_loss = grad_outputs[0];
    // needs_input_grad counts the tensors given (None weight or avg_factor has no edge).
    const bool need_pred = ctx->needs_input_grad(0), need_target = ctx->needs_input_grad(1);
    const bool need_weight = weight.defined() && ctx->needs_input_grad(2);
    const bool need_avg_factor = avg_factor.defined() && ctx->needs_input_grad(weight.defined() ? 3 : 2);
    const bool none = o.reduction == Reduction::None;
    const bool iou_kind = is_iou_family(o.kind);  // one loss per box

    at::Tensor grad_pred, grad_target;
    auto take = [&](const char* key) -> at::Tensor {
      auto it = ctx->saved_data.find(key);
      if (it == ctx->saved_data.end()) return at::Tensor();
      at::Tensor t = it->second.toTensor();
      ctx->saved_data.erase(it);  // a second backward (retain_graph) recomputes instead
      return t;
    };
    at::Tensor scaled_pred = need_pred ? take("grad_pred") : at::Tensor();
    at::Tensor scaled_target = need_target ? take("grad_target") : at::Tensor();
    const bool have_forward_grads = (!need_pred || scaled_pred.defined()) &&
                                    (!need_target || scaled_target.defined());
    if ((need_pred || need_target) && have_forward_grads) {
      const at::Tensor factor = none && iou_kind ? grad_loss.unsqueeze(-1) : grad_loss;
      if (need_pred) grad_pred = scaled_pred.mul_(factor);
      if (need_target) grad_target = scaled_target.mul_(factor);
    } else if (need_pred || need_target) {
      std::tie(grad_pred, grad_target) =
          call_box_loss_backward(grad_loss, pred, target, optional_of(weight),
                                 optional_of(avg_factor), optional_of(anchors), o, need_pred,
                                 need_target);
      if (!need_pred) grad_pred = at::Tensor();
      if (!need_target) grad_target = at::Tensor();
    }

    at::Tensor grad_weight, grad_avg_factor;
    if (need_weight) {
      const at::Tensor unweighted = call_box_loss(pred, target, std::nullopt, std::nullopt,
                                                  optional_of(anchors), o, Reduction::None);
      grad_weight = weight_grad(unweighted, grad_loss, o.reduction, avg_factor);
      const bool per_coord = weight.sizes() == pred.sizes();
      if (per_coord && iou_kind) {
        grad_weight = (grad_weight * 0.25).unsqueeze(-1).expand(weight.sizes());
      } else if (!per_coord && !iou_kind) {
        grad_weight = grad_weight.sum(-1);
      }
      grad_weight = grad_weight.to(weight.scalar_type());
    }
    if (need_avg_factor) grad_avg_factor = avg_factor_grad(grad_loss, loss_out, avg_factor);
    variable_list grads = guard_double_backward({grad_pred, grad_target, grad_weight, grad_avg_factor},
                                                "alwa::box_loss", pred, target);
    // anchors and the options are constants.
    return {grads[0], grads[1], grads[2], grads[3], at::Tensor(), at::Tensor()};
  }

};

at::Tensor box_loss_autograd(ALWA_BOX_LOSS_PARAMS) {
  // The names are parsed here (the op's own errors, before any work); the op checks the rest.
  const BoxLossOptions options{parse_loss_kind(loss), parse_reduction(reduction),
                               parse_box_format(box_format), eps, beta, alpha, focal_gamma,
                               delta_means, delta_stds, wh_ratio_clip};
  if (!needs_graph(pred, target, weight, avg_factor)) {  // inference: the loss alone, no graph
    return call_box_loss(pred, target, weight, avg_factor, anchors, options, options.reduction);
  }
  return BoxLossFunction::apply(pred, target, weight, avg_factor, anchors, options)[0];
}

// ----------------------------------------------------------------------------- box_iou

at::Tensor call_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2, const std::string& kind,
                        const std::string& box_format, double eps) {
  static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::string&,
                                      const std::string&, double)>("alwa::box_iou");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(boxes1, boxes2, kind, box_format, eps);
}

class BoxIouFunction : public torch::autograd::Function<BoxIouFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& boxes1,
                               const at::Tensor& boxes2, std::string kind, std::string box_format,
                               double eps) {
    ctx->save_for_backward({boxes1, boxes2});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["box_format"] = box_format;
    ctx->saved_data["eps"] = eps;
    return {call_box_iou(boxes1, boxes2, kind, box_format, eps)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::string&,
        const std::string&, double, bool, bool)>("alwa::box_iou_backward");
    const auto saved = ctx->get_saved_variables();
    const bool need1 = ctx->needs_input_grad(0), need2 = ctx->needs_input_grad(1);
    at::Tensor grad1, grad2;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad1, grad2) =
          op.call(grad_outputs[0], saved[0], saved[1], ctx->saved_data["kind"].toStringRef(),
                  ctx->saved_data["box_format"].toStringRef(), ctx->saved_data["eps"].toDouble(),
                  need1, need2);
    }
    variable_list grads = guard_double_backward({need1 ? grad1 : at::Tensor(), need2 ? grad2 : at::Tensor()},
                                                "alwa::box_iou", saved[0], saved[1]);
    return {grads[0], grads[1], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor box_iou_autograd(const at::Tensor& boxes1, const at::Tensor& boxes2,
                            const std::string& kind, const std::string& box_format, double eps) {
  if (!(at::GradMode::is_enabled() && (boxes1.requires_grad() || boxes2.requires_grad()))) {
    return call_box_iou(boxes1, boxes2, kind, box_format, eps);
  }
  return BoxIouFunction::apply(boxes1, boxes2, std::string(kind), std::string(box_format), eps)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, Autograd, m) {
  m.impl("box_loss", &box_loss_autograd);
  m.impl("box_iou", &box_iou_autograd);
}

}  // namespace alwa
