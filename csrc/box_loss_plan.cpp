#include "box_loss_plan.h"

#include <cmath>

namespace alwa {

namespace {

void check_boxes(const at::Tensor& boxes, const char* name) {
  TORCH_CHECK_VALUE(boxes.dim() >= 1 && boxes.size(-1) == 4, name,
                    ": expected boxes of shape (..., 4), got shape ", shape_str(boxes.sizes()));
  check_float_dtype(boxes, name, " boxes");
}

// Everything but the outputs: what box_loss and box_loss_backward share.
BoxLossPlan plan_inputs(ALWA_BOX_LOSS_PARAMS, bool grad_pred, bool grad_target) {
  BoxLossPlan plan;
  plan.kind = parse_loss_kind(loss);
  plan.reduction = parse_reduction(reduction);
  plan.format = parse_box_format(box_format);
  check_nonnegative(eps, "eps");
  check_positive(beta, "beta");
  check_positive(alpha, "alpha");
  TORCH_CHECK_VALUE(alpha == 1.0 || has_alpha_form(plan.kind), "alpha: only ",
                    quoted_choices(kLossKindNames, kNumPairwiseKinds),
                    " have an Alpha-IoU form; got alpha=", alpha, " with loss='", loss, "'");
  check_nonnegative(focal_gamma, "focal_gamma");
  TORCH_CHECK_VALUE(focal_gamma == 0.0 || plan.kind == LossKind::EIoU,
                    "focal_gamma: only used by loss='eiou'; got focal_gamma=", focal_gamma,
                    " with loss='", loss, "'");
  plan.eps = eps;
  plan.beta = beta;
  plan.alpha = alpha;
  plan.focal_gamma = focal_gamma;

  TORCH_CHECK_VALUE(delta_means.size() == 4, "delta_means: expected 4 finite numbers, got ",
                    delta_means);
  TORCH_CHECK_VALUE(delta_stds.size() == 4, "delta_stds: expected 4 finite numbers > 0, got ",
                    delta_stds);
  for (int k = 0; k < 4; ++k) {
    TORCH_CHECK_VALUE(std::isfinite(delta_means[k]), "delta_means: expected 4 finite numbers, got ",
                      delta_means);
    TORCH_CHECK_VALUE(std::isfinite(delta_stds[k]) && delta_stds[k] > 0,
                      "delta_stds: expected 4 finite numbers > 0, got ", delta_stds);
    plan.delta_means[k] = delta_means[k];
    plan.delta_stds[k] = delta_stds[k];
  }
  check_positive(wh_ratio_clip, "wh_ratio_clip");
  plan.max_log_ratio = std::abs(std::log(wh_ratio_clip));

  check_boxes(pred, "pred");
  check_boxes(target, "target");
  check_like(target, "target", pred, "pred");
  plan.num_boxes = pred.numel() / 4;
  plan.pred = pred.contiguous();
  plan.target = target.contiguous();

  if (plan.format == BoxFormat::Deltas) {
    TORCH_CHECK_VALUE(anchors.has_value(), "anchors: required with box_format='deltas'");
    const auto& a = *anchors;
    TORCH_CHECK_VALUE(a.is_floating_point(), "anchors: expected a floating-point tensor, got ",
                      a.scalar_type());
    TORCH_CHECK_VALUE(a.sizes() == pred.sizes(), "anchors: expected the shape of pred ",
                      shape_str(pred.sizes()), ", got ", shape_str(a.sizes()));
    check_device(a, "anchors", pred, "pred");
    TORCH_CHECK_VALUE(is_iou_family(plan.kind) || eps > 0,
                      "eps: must be > 0 for l1/smooth_l1 with box_format='deltas' (it floors the "
                      "widths and heights of the encoded target boxes)");
    // Anchors are constants: no gradient flows to them.
    plan.anchors = a.detach().to(pred.scalar_type()).contiguous();
  } else {
    TORCH_CHECK_VALUE(!anchors.has_value(), "anchors: only used with box_format='deltas', got "
                      "box_format='", box_format, "'");
  }

  plan.weight_per_coord = false;
  if (weight.has_value()) {
    plan.weight = plan_weight(*weight, pred, "pred", "box", "coordinate", plan.weight_per_coord);
  }

  const bool coordinate_wise = !is_iou_family(plan.kind);
  plan.scale = 1.0;
  if (avg_factor.has_value()) {
    plan.avg_factor = plan_avg_factor(*avg_factor, plan.reduction, pred, "pred");
  } else if (plan.reduction == Reduction::Mean && plan.num_boxes > 0) {
    plan.scale = 1.0 / static_cast<double>(coordinate_wise ? plan.num_boxes * 4 : plan.num_boxes);
  }
  plan.grad_pred = grad_pred;
  plan.grad_target = grad_target;
  return plan;
}

at::IntArrayRef loss_shape(const BoxLossPlan& plan, const at::Tensor& pred) {
  if (plan.reduction != Reduction::None) return {};
  return is_iou_family(plan.kind) ? pred.sizes().slice(0, pred.dim() - 1) : pred.sizes();
}

void allocate_gradients(BoxLossPlan& plan, const at::Tensor& pred) {
  const auto options = pred.options();
  plan.grad_pred_out = plan.grad_pred ? at::empty(pred.sizes(), options) : at::empty({0}, options);
  plan.grad_target_out =
      plan.grad_target ? at::empty(pred.sizes(), options) : at::empty({0}, options);
}

}  // namespace

BoxLossPlan plan_box_loss(ALWA_BOX_LOSS_PARAMS, bool grad_pred, bool grad_target) {
  BoxLossPlan plan = plan_inputs(ALWA_BOX_LOSS_ARGS, grad_pred, grad_target);
  plan.loss = at::empty(loss_shape(plan, pred), pred.options());
  allocate_gradients(plan, pred);
  return plan;
}

BoxLossPlan plan_box_loss_backward(const at::Tensor& grad_loss, ALWA_BOX_LOSS_PARAMS,
                                   bool grad_pred, bool grad_target) {
  BoxLossPlan plan = plan_inputs(ALWA_BOX_LOSS_ARGS, grad_pred, grad_target);
  const auto expected = loss_shape(plan, pred);
  TORCH_CHECK_VALUE(grad_loss.sizes() == expected, "grad_loss: expected the shape of the loss ",
                    shape_str(expected), ", got ", shape_str(grad_loss.sizes()));
  check_like(grad_loss, "grad_loss", pred, "pred", /*shape=*/false);
  plan.upstream = grad_loss.contiguous();
  allocate_gradients(plan, pred);
  return plan;
}

LossKind check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2,
                            const std::string& kind, const std::string& box_format, double eps) {
  const LossKind parsed = parse_iou_kind(kind);
  parse_iou_box_format(box_format);
  check_nonnegative(eps, "eps");
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  TORCH_CHECK_VALUE(boxes1.dim() == 2, "boxes1: expected shape (M, 4), got ",
                    shape_str(boxes1.sizes()));
  TORCH_CHECK_VALUE(boxes2.dim() == 2, "boxes2: expected shape (N, 4), got ",
                    shape_str(boxes2.sizes()));
  check_like(boxes2, "boxes2", boxes1, "boxes1", /*shape=*/false);
  return parsed;
}

BoxIouPlan plan_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2,
                        const std::string& kind, const std::string& box_format, double eps) {
  BoxIouPlan plan;
  plan.kind = check_box_iou_args(boxes1, boxes2, kind, box_format, eps);
  plan.format = parse_iou_box_format(box_format);
  plan.m = boxes1.size(0);
  plan.n = boxes2.size(0);
  plan.boxes1 = boxes1.contiguous();
  plan.boxes2 = boxes2.contiguous();
  plan.out = at::empty({plan.m, plan.n}, boxes1.options());
  return plan;
}

void check_box_iou_grad(const at::Tensor& grad, const at::Tensor& boxes1,
                        const at::Tensor& boxes2) {
  const int64_t m = boxes1.size(0), n = boxes2.size(0);
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == m && grad.size(1) == n,
                    "grad: expected shape (", m, ", ", n, "), got ", shape_str(grad.sizes()));
  check_device(grad, "grad", boxes1, "boxes1");
  TORCH_CHECK_VALUE(grad.is_floating_point(), "grad: expected a floating-point tensor, got ",
                    grad.scalar_type());
}

}  // namespace alwa
