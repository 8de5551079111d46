#include "box_loss_plan.h"

#include <cmath>

namespace alwa {

LossKind parse_loss_kind(const std::string& name) {
  if (name == "iou") return LossKind::IoU;
  if (name == "giou") return LossKind::GIoU;
  if (name == "diou") return LossKind::DIoU;
  if (name == "ciou") return LossKind::CIoU;
  if (name == "l1") return LossKind::L1;
  if (name == "smooth_l1") return LossKind::SmoothL1;
  if (name == "eiou") return LossKind::EIoU;
  if (name == "siou") return LossKind::SIoU;
  TORCH_CHECK_VALUE(false,
                    "loss: expected one of iou, giou, diou, ciou, eiou, siou, l1, smooth_l1, got '",
                    name, "'");
}

Reduction parse_reduction(const std::string& name) {
  if (name == "none") return Reduction::None;
  if (name == "sum") return Reduction::Sum;
  if (name == "mean") return Reduction::Mean;
  TORCH_CHECK_VALUE(false, "reduction: expected one of none, mean, sum, got '", name, "'");
}

BoxFormat parse_box_format(const std::string& name) {
  if (name == "xyxy") return BoxFormat::XYXY;
  if (name == "cxcywh") return BoxFormat::CXCYWH;
  if (name == "deltas") return BoxFormat::Deltas;
  TORCH_CHECK_VALUE(false, "box_format: expected 'xyxy', 'cxcywh' or 'deltas', got '", name, "'");
}

BoxFormat parse_iou_box_format(const std::string& name) {
  const BoxFormat format = parse_box_format(name);
  TORCH_CHECK_VALUE(format != BoxFormat::Deltas, "box_format: expected 'xyxy' or 'cxcywh', got '",
                    name, "'");
  return format;
}

namespace {

void check_boxes(const at::Tensor& boxes, const char* name) {
  TORCH_CHECK_VALUE(boxes.dim() >= 1 && boxes.size(-1) == 4, name,
                    ": expected boxes of shape (..., 4), got shape ", boxes.sizes());
  const auto dtype = boxes.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                        dtype == at::kBFloat16,
                    name, ": expected float32, float64, float16 or bfloat16, got ", dtype);
}

void check_eps(double eps) {
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps: expected a finite value >= 0, got ",
                    eps);
}

}  // namespace

BoxLossPlan plan_box_loss(const at::Tensor& pred, const at::Tensor& target,
                          const std::optional<at::Tensor>& weight,
                          const std::optional<at::Tensor>& avg_factor,
                          const std::optional<at::Tensor>& anchors, const std::string& loss,
                          const std::string& reduction, const std::string& box_format, double eps,
                          double beta, double alpha, double focal_gamma,
                          at::ArrayRef<double> delta_means, at::ArrayRef<double> delta_stds,
                          double wh_ratio_clip, bool grad_pred, bool grad_target) {
  BoxLossPlan plan;
  plan.kind = parse_loss_kind(loss);
  plan.reduction = parse_reduction(reduction);
  plan.format = parse_box_format(box_format);
  check_eps(eps);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta > 0, "beta: expected a finite value > 0, got ",
                    beta);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha > 0, "alpha: expected a finite value > 0, got ",
                    alpha);
  TORCH_CHECK_VALUE(alpha == 1.0 || has_alpha_form(plan.kind),
                    "alpha: only iou, giou, diou and ciou have an Alpha-IoU form; got alpha=",
                    alpha, " with loss '", loss, "'");
  TORCH_CHECK_VALUE(std::isfinite(focal_gamma) && focal_gamma >= 0,
                    "focal_gamma: expected a finite value >= 0, got ", focal_gamma);
  TORCH_CHECK_VALUE(focal_gamma == 0.0 || plan.kind == LossKind::EIoU,
                    "focal_gamma: only used by loss='eiou'; got focal_gamma=", focal_gamma,
                    " with loss '", loss, "'");
  plan.eps = eps;
  plan.beta = beta;
  plan.alpha = alpha;
  plan.focal_gamma = focal_gamma;

  TORCH_CHECK_VALUE(delta_means.size() == 4, "delta_means: expected 4 numbers, got ",
                    delta_means.size());
  TORCH_CHECK_VALUE(delta_stds.size() == 4, "delta_stds: expected 4 numbers, got ",
                    delta_stds.size());
  for (int k = 0; k < 4; ++k) {
    TORCH_CHECK_VALUE(std::isfinite(delta_means[k]), "delta_means: expected finite numbers, got ",
                      delta_means);
    TORCH_CHECK_VALUE(std::isfinite(delta_stds[k]) && delta_stds[k] > 0,
                      "delta_stds: expected finite numbers > 0, got ", delta_stds);
    plan.delta_means[k] = delta_means[k];
    plan.delta_stds[k] = delta_stds[k];
  }
  TORCH_CHECK_VALUE(std::isfinite(wh_ratio_clip) && wh_ratio_clip > 0,
                    "wh_ratio_clip: expected a finite value > 0, got ", wh_ratio_clip);
  plan.max_log_ratio = std::abs(std::log(wh_ratio_clip));

  check_boxes(pred, "pred");
  check_boxes(target, "target");
  TORCH_CHECK_VALUE(pred.sizes() == target.sizes(), "target: expected the shape of pred ",
                    pred.sizes(), ", got ", target.sizes());
  TORCH_CHECK_VALUE(pred.scalar_type() == target.scalar_type(),
                    "target: expected the dtype of pred (", pred.scalar_type(), "), got ",
                    target.scalar_type());
  TORCH_CHECK_VALUE(pred.device() == target.device(), "target: expected the device of pred (",
                    pred.device(), "), got ", target.device());
  plan.num_boxes = pred.numel() / 4;

  if (plan.format == BoxFormat::Deltas) {
    TORCH_CHECK_VALUE(anchors.has_value(), "anchors: required with box_format='deltas'");
    const auto& a = *anchors;
    TORCH_CHECK_VALUE(a.sizes() == pred.sizes(), "anchors: expected the shape of pred ",
                      pred.sizes(), ", got ", a.sizes());
    TORCH_CHECK_VALUE(a.is_floating_point(), "anchors: expected a floating-point tensor, got ",
                      a.scalar_type());
    TORCH_CHECK_VALUE(a.device() == pred.device(), "anchors: expected the device of pred (",
                      pred.device(), "), got ", a.device());
    TORCH_CHECK_VALUE(is_iou_family(plan.kind) || eps > 0,
                      "eps: must be > 0 for l1/smooth_l1 with box_format='deltas' (it floors the "
                      "widths and heights of the encoded target boxes)");
    plan.anchors = a.detach().to(pred.scalar_type()).contiguous();
  } else {
    TORCH_CHECK_VALUE(!anchors.has_value(), "anchors: only used with box_format='deltas'");
  }

  const auto box_shape = pred.sizes().slice(0, pred.dim() - 1);
  plan.weight_per_coord = false;
  if (weight.has_value()) {
    const auto& w = *weight;
    TORCH_CHECK_VALUE(w.device() == pred.device(), "weight: expected the device of pred (",
                      pred.device(), "), got ", w.device());
    TORCH_CHECK_VALUE(w.is_floating_point(), "weight: expected a floating-point tensor, got ",
                      w.scalar_type());
    plan.weight_per_coord = w.sizes() == pred.sizes();
    TORCH_CHECK_VALUE(plan.weight_per_coord || w.sizes() == box_shape,
                      "weight: expected shape ", box_shape, " (per box) or ", pred.sizes(),
                      " (per coordinate), got ", w.sizes());
  }

  const bool coordinate_wise = !is_iou_family(plan.kind);
  plan.scale = 1.0;
  if (avg_factor.has_value()) {
    const auto& a = *avg_factor;
    TORCH_CHECK_VALUE(a.dim() == 0, "avg_factor: expected a 0-dim tensor, got shape ",
                      a.sizes());
    TORCH_CHECK_VALUE(a.device() == pred.device(), "avg_factor: expected the device of pred (",
                      pred.device(), "), got ", a.device());
    TORCH_CHECK_VALUE(plan.reduction != Reduction::Sum,
                      "avg_factor: cannot be used with reduction='sum'");
    // "none" ignores avg_factor, as mmdet's weight_reduce_loss does.
    if (plan.reduction == Reduction::Mean) plan.avg_factor = a.to(at::kDouble).contiguous();
  } else if (plan.reduction == Reduction::Mean && plan.num_boxes > 0) {
    plan.scale = 1.0 / static_cast<double>(coordinate_wise ? plan.num_boxes * 4 : plan.num_boxes);
  }

  plan.grad_pred = grad_pred;
  plan.grad_target = grad_target;
  const auto options = pred.options();
  if (plan.reduction == Reduction::None) {
    plan.loss = coordinate_wise ? at::empty(pred.sizes(), options) : at::empty(box_shape, options);
  } else {
    plan.loss = at::empty({}, options);
  }
  plan.grad_pred_out = grad_pred ? at::empty(pred.sizes(), options) : at::empty({0}, options);
  plan.grad_target_out = grad_target ? at::empty(pred.sizes(), options) : at::empty({0}, options);
  return plan;
}

LossKind check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2,
                            const std::string& kind, double eps) {
  const LossKind loss_kind = parse_loss_kind(kind);
  TORCH_CHECK_VALUE(has_alpha_form(loss_kind), "kind: expected one of iou, giou, diou, ciou, got '",
                    kind, "'");
  check_eps(eps);
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  TORCH_CHECK_VALUE(boxes1.dim() == 2, "boxes1: expected shape (M, 4), got ", boxes1.sizes());
  TORCH_CHECK_VALUE(boxes2.dim() == 2, "boxes2: expected shape (N, 4), got ", boxes2.sizes());
  TORCH_CHECK_VALUE(boxes1.scalar_type() == boxes2.scalar_type(),
                    "boxes2: expected the dtype of boxes1 (", boxes1.scalar_type(), "), got ",
                    boxes2.scalar_type());
  TORCH_CHECK_VALUE(boxes1.device() == boxes2.device(), "boxes2: expected the device of boxes1 (",
                    boxes1.device(), "), got ", boxes2.device());
  return loss_kind;
}

}  // namespace alwa
