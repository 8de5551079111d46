#include "focal_loss_plan.h"

#include <cmath>

#include "common/checks.h"

namespace alwa {

FocalLossPlan plan_focal_loss(ALWA_FOCAL_LOSS_PARAMS, bool grad, OutputAllocator allocate_grad) {
  FocalLossPlan plan;
  plan.reduction = parse_reduction(reduction);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha <= 1.0, "alpha: expected a number <= 1 (a "
                    "negative one turns the weighting off), got ", alpha);
  TORCH_CHECK_VALUE(std::isfinite(gamma) && gamma >= 0.0, "gamma: expected a finite number >= 0, got ",
                    gamma);
  plan.alpha_pos = alpha >= 0.0 ? alpha : 1.0;
  plan.alpha_neg = alpha >= 0.0 ? 1.0 - alpha : 1.0;
  plan.gamma = gamma;

  const auto dtype = logits.scalar_type();
  check_float_dtype(logits, "logits", "");
  TORCH_CHECK_VALUE(logits.dim() >= 1, "logits: expected shape (..., num_classes), got a 0-dim tensor");
  plan.num_classes = logits.size(-1);
  const auto row_shape = logits.sizes().slice(0, logits.dim() - 1);
  plan.num_rows = c10::multiply_integers(row_shape);
  plan.logits = logits.contiguous();

  TORCH_CHECK_VALUE(targets.device() == logits.device(), "targets: expected the device of logits (",
                    logits.device(), "), got ", targets.device());
  if (targets.is_floating_point()) {
    plan.hard_targets = false;
    TORCH_CHECK_VALUE(targets.sizes() == logits.sizes(),
                      "targets: float targets need the logits' shape ", shape_str(logits.sizes()),
                      ", got ", shape_str(targets.sizes()));
    TORCH_CHECK_VALUE(targets.scalar_type() == dtype, "targets: expected the dtype of logits (",
                      dtype, "), got ", targets.scalar_type());
    plan.soft_targets = targets.contiguous();
  } else {
    plan.hard_targets = true;
    TORCH_CHECK_VALUE(targets.scalar_type() == at::kLong,
                      "targets: expected int64 class indices or float targets, got ",
                      targets.scalar_type());
    TORCH_CHECK_VALUE(targets.sizes() == row_shape, "targets: class indices need the shape ",
                      shape_str(row_shape), ", got ", shape_str(targets.sizes()));
    plan.labels = targets.contiguous();
  }

  plan.weight_per_element = false;
  if (weight.has_value()) {
    plan.weight = plan_weight(*weight, logits, "logits", "anchor", "element", plan.weight_per_element);
  }

  plan.scale = 1.0;
  if (avg_factor.has_value()) {
    plan.avg_factor = plan_avg_factor(*avg_factor, plan.reduction, logits, "logits");
  } else if (plan.reduction == Reduction::Mean && logits.numel() > 0) {
    plan.scale = 1.0 / static_cast<double>(logits.numel());
  }

  plan.grad = grad;
  const auto options = logits.options();
  plan.loss = plan.reduction == Reduction::None ? at::empty(logits.sizes(), options)
                                                : at::empty({}, options);
  plan.grad_logits = grad ? allocate_grad(logits.sizes(), options) : at::empty({0}, options);
  return plan;
}

}  // namespace alwa
