#include "box_loss_plan.h"

#include <cmath>

namespace alwa {

namespace {

constexpr const char* kLossKinds = "'iou', 'giou', 'diou', 'ciou', 'eiou', 'siou', 'l1', 'smooth_l1'";

}  // namespace

LossKind parse_loss_kind(const std::string& name) {
  if (name == "iou") return LossKind::IoU;
  if (name == "giou") return LossKind::GIoU;
  if (name == "diou") return LossKind::DIoU;
  if (name == "ciou") return LossKind::CIoU;
  if (name == "l1") return LossKind::L1;
  if (name == "smooth_l1") return LossKind::SmoothL1;
  if (name == "eiou") return LossKind::EIoU;
  if (name == "siou") return LossKind::SIoU;
  TORCH_CHECK_VALUE(false, "loss: expected one of ", kLossKinds, ", got '", name, "'");
}

Reduction parse_reduction(const std::string& name) {
  if (name == "none") return Reduction::None;
  if (name == "sum") return Reduction::Sum;
  if (name == "mean") return Reduction::Mean;
  TORCH_CHECK_VALUE(false, "reduction: expected one of 'none', 'mean', 'sum', got '", name, "'");
}

BoxFormat parse_box_format(const std::string& name) {
  if (name == "xyxy") return BoxFormat::XYXY;
  if (name == "cxcywh") return BoxFormat::CXCYWH;
  if (name == "deltas") return BoxFormat::Deltas;
  TORCH_CHECK_VALUE(false, "box_format: expected one of 'xyxy', 'cxcywh', 'deltas', got '", name,
                    "'");
}

BoxFormat parse_iou_box_format(const std::string& name) {
  TORCH_CHECK_VALUE(name == "xyxy" || name == "cxcywh",
                    "box_format: expected one of 'xyxy', 'cxcywh', got '", name, "'");
  return parse_box_format(name);
}

namespace {

void check_boxes(const at::Tensor& boxes, const char* name) {
  TORCH_CHECK_VALUE(boxes.dim() >= 1 && boxes.size(-1) == 4, name,
                    ": expected boxes of shape (..., 4), got shape ", shape_str(boxes.sizes()));
  const auto dtype = boxes.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                        dtype == at::kBFloat16,
                    name, ": expected float32, float64, float16 or bfloat16 boxes, got ", dtype);
}

// `other` has the shape (optionally), dtype and device of `ref`.
void check_like(const at::Tensor& other, const char* name, const at::Tensor& ref,
                const char* ref_name, bool shape = true) {
  TORCH_CHECK_VALUE(!shape || other.sizes() == ref.sizes(), name, ": expected the shape of ",
                    ref_name, " ", shape_str(ref.sizes()), ", got ", shape_str(other.sizes()));
  TORCH_CHECK_VALUE(other.scalar_type() == ref.scalar_type(), name, ": expected the dtype of ",
                    ref_name, " (", ref.scalar_type(), "), got ", other.scalar_type());
  TORCH_CHECK_VALUE(other.device() == ref.device(), name, ": expected the device of ", ref_name,
                    " (", ref.device(), "), got ", other.device());
}

void check_device(const at::Tensor& other, const char* name, const at::Tensor& ref,
                  const char* ref_name) {
  TORCH_CHECK_VALUE(other.device() == ref.device(), name, ": expected the device of ", ref_name,
                    " (", ref.device(), "), got ", other.device());
}

void check_nonnegative(double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value >= 0, name,
                    ": expected a finite number >= 0, got ", value);
}

void check_positive(double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value > 0, name, ": expected a finite number > 0, got ",
                    value);
}

}  // namespace

at::Tensor plan_weight(const at::Tensor& weight, const at::Tensor& ref, const char* ref_name,
                       const char* row_word, const char* element_word, bool& per_element) {
  TORCH_CHECK_VALUE(weight.is_floating_point(), "weight: expected a floating-point tensor, got ",
                    weight.scalar_type());
  const auto row_shape = ref.sizes().slice(0, ref.dim() - 1);
  per_element = weight.sizes() == ref.sizes();
  TORCH_CHECK_VALUE(per_element || weight.sizes() == row_shape, "weight: expected shape ",
                    shape_str(row_shape), " (per ", row_word, ") or ", shape_str(ref.sizes()),
                    " (per ", element_word, "), got ", shape_str(weight.sizes()));
  check_device(weight, "weight", ref, ref_name);
  return weight.to(ref.scalar_type()).contiguous();
}

at::Tensor plan_avg_factor(const at::Tensor& avg_factor, Reduction reduction, const at::Tensor& ref,
                           const char* ref_name) {
  TORCH_CHECK_VALUE(reduction != Reduction::Sum, "avg_factor: cannot be used with reduction='sum'");
  TORCH_CHECK_VALUE(avg_factor.dim() == 0, "avg_factor: expected a 0-dim tensor, got shape ",
                    shape_str(avg_factor.sizes()));
  TORCH_CHECK_VALUE(avg_factor.is_floating_point(),
                    "avg_factor: expected a floating-point tensor, got ", avg_factor.scalar_type());
  check_device(avg_factor, "avg_factor", ref, ref_name);
  // "none" ignores avg_factor, as mmdet's weight_reduce_loss does.
  return reduction == Reduction::Mean ? avg_factor.to(at::kDouble).contiguous() : at::Tensor();
}

namespace {

// Everything but the outputs: what box_loss and box_loss_backward share.
BoxLossPlan plan_inputs(ALWA_BOX_LOSS_PARAMS, bool grad_pred, bool grad_target) {
  BoxLossPlan plan;
  plan.kind = parse_loss_kind(loss);
  plan.reduction = parse_reduction(reduction);
  plan.format = parse_box_format(box_format);
  check_nonnegative(eps, "eps");
  check_positive(beta, "beta");
  check_positive(alpha, "alpha");
  TORCH_CHECK_VALUE(alpha == 1.0 || has_alpha_form(plan.kind),
                    "alpha: only 'iou', 'giou', 'diou', 'ciou' have an Alpha-IoU form; got alpha=",
                    alpha, " with loss='", loss, "'");
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
  TORCH_CHECK_VALUE(kind == "iou" || kind == "giou" || kind == "diou" || kind == "ciou",
                    "kind: expected one of 'iou', 'giou', 'diou', 'ciou', got '", kind, "'");
  parse_iou_box_format(box_format);
  check_nonnegative(eps, "eps");
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  TORCH_CHECK_VALUE(boxes1.dim() == 2, "boxes1: expected shape (M, 4), got ",
                    shape_str(boxes1.sizes()));
  TORCH_CHECK_VALUE(boxes2.dim() == 2, "boxes2: expected shape (N, 4), got ",
                    shape_str(boxes2.sizes()));
  check_like(boxes2, "boxes2", boxes1, "boxes1", /*shape=*/false);
  return parse_loss_kind(kind);
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
