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
  TORCH_CHECK_VALUE(false, "loss: expected one of iou, giou, diou, ciou, l1, smooth_l1, got '",
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
  TORCH_CHECK_VALUE(false, "box_format: expected 'xyxy' or 'cxcywh', got '", name, "'");
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
                          const std::optional<at::Tensor>& avg_factor, const std::string& loss,
                          const std::string& reduction, const std::string& box_format, double eps,
                          double beta, bool grad_pred, bool grad_target) {
  BoxLossPlan plan;
  plan.kind = parse_loss_kind(loss);
  plan.reduction = parse_reduction(reduction);
  plan.format = parse_box_format(box_format);
  check_eps(eps);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta > 0, "beta: expected a finite value > 0, got ",
                    beta);
  plan.eps = eps;
  plan.beta = beta;

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
  TORCH_CHECK_VALUE(is_iou_family(loss_kind), "kind: expected one of iou, giou, diou, ciou, got '",
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
