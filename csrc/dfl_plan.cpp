#include "dfl_plan.h"

#include "common/checks.h"

namespace alwa {

void check_dfl_devices(const at::Tensor& pred_dist, const at::Tensor& target,
                       const std::optional<at::Tensor>& weight,
                       const std::optional<at::Tensor>& avg_factor) {
  check_device(target, "target", pred_dist, "pred_dist");
  if (weight.has_value()) check_device(*weight, "weight", pred_dist, "pred_dist");
  if (avg_factor.has_value()) check_device(*avg_factor, "avg_factor", pred_dist, "pred_dist");
}

DflPlan plan_dfl(ALWA_DFL_PARAMS, bool grad, OutputAllocator allocate_grad) {
  DflPlan plan;
  plan.reduction = parse_reduction(reduction);
  check_float_dtype(pred_dist, "pred_dist", "");
  TORCH_CHECK_VALUE(pred_dist.dim() >= 1 && pred_dist.size(-1) >= 1,
                    "pred_dist: expected shape (..., num_bins) with num_bins >= 1, got ",
                    shape_str(pred_dist.sizes()));
  // (devices: checked by DflOps before its device guard, check_dfl_devices)
  plan.num_bins = pred_dist.size(-1);
  const auto row_shape = pred_dist.sizes().slice(0, pred_dist.dim() - 1);
  plan.num_rows = c10::multiply_integers(row_shape);
  plan.logits = pred_dist.contiguous();
  const auto compute = compute_dtype(pred_dist.scalar_type());

  TORCH_CHECK_VALUE(target.is_floating_point(), "target: expected floating-point distances (in bins), got ",
                    target.scalar_type());
  TORCH_CHECK_VALUE(target.sizes() == row_shape, "target: expected shape ", shape_str(row_shape),
                    " (pred_dist's without its bins), got ", shape_str(target.sizes()));
  plan.target = target.to(compute).contiguous();

  if (weight.has_value()) {
    TORCH_CHECK_VALUE(weight->is_floating_point(), "weight: expected a floating-point tensor, got ",
                      weight->scalar_type());
    const bool per_distance = weight->sizes() == target.sizes();
    const bool per_box = target.dim() >= 1 && weight->sizes() == target.sizes().slice(0, target.dim() - 1);
    TORCH_CHECK_VALUE(per_distance || per_box, "weight: expected shape ", shape_str(target.sizes()),
                      " (per distance)",
                      target.dim() >= 1 ? " or " + shape_str(target.sizes().slice(0, target.dim() - 1)) + " (per box)" : "",
                      ", got ", shape_str(weight->sizes()));
    const at::Tensor w = weight->to(compute);
    plan.weight = (per_distance ? w : w.unsqueeze(-1).expand(target.sizes())).contiguous();
  }

  plan.scale = 1.0;
  if (avg_factor.has_value()) {
    plan.avg_factor = plan_avg_factor(*avg_factor, plan.reduction, pred_dist, "pred_dist");
  } else if (plan.reduction == Reduction::Mean && plan.num_rows > 0) {
    plan.scale = 1.0 / static_cast<double>(plan.num_rows);
  }

  plan.grad = grad;
  const auto options = pred_dist.options();
  plan.loss = plan.reduction == Reduction::None ? at::empty(target.sizes(), options) : at::empty({}, options);
  plan.grad_logits = grad ? allocate_grad(pred_dist.sizes(), options) : at::empty({0}, options);
  return plan;
}

DflIntegralPlan plan_dfl_integral(const at::Tensor& pred_dist, const at::Tensor* grad,
                                  OutputAllocator allocate_grad) {
  check_float_dtype(pred_dist, "pred_dist", "");
  TORCH_CHECK_VALUE(pred_dist.dim() >= 1 && pred_dist.size(-1) >= 1,
                    "pred_dist: expected shape (..., num_bins) with num_bins >= 1, got ",
                    shape_str(pred_dist.sizes()));
  DflIntegralPlan plan;
  plan.num_bins = pred_dist.size(-1);
  const auto row_shape = pred_dist.sizes().slice(0, pred_dist.dim() - 1);
  plan.num_rows = c10::multiply_integers(row_shape);
  plan.logits = pred_dist.contiguous();
  if (grad == nullptr) {
    plan.out = at::empty(row_shape, pred_dist.options());
  } else {
    TORCH_CHECK_VALUE(grad->sizes() == row_shape, "grad: expected shape ", shape_str(row_shape),
                      " (pred_dist's without its bins), got ", shape_str(grad->sizes()));
    check_like(*grad, "grad", pred_dist, "pred_dist", false);
    plan.grad_in = grad->contiguous();
    plan.out = allocate_grad(pred_dist.sizes(), pred_dist.options());
  }
  return plan;
}

}  // namespace alwa
