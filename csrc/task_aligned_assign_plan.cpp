#include "task_aligned_assign_plan.h"

#include <cmath>

namespace alwa {
namespace {

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected, const char* meaning) {
  TORCH_CHECK_VALUE(t.sizes() == expected, name, ": expected shape ", shape_str(expected), " ", meaning,
                    ", got ", shape_str(t.sizes()));
}

// (B, n, 1), ultralytics' form, or (B, n): returned as (B, n).
at::Tensor per_gt(const at::Tensor& t, const char* name, int64_t batch, int64_t num_gt) {
  const bool column = t.dim() == 3 && t.size(0) == batch && t.size(1) == num_gt && t.size(2) == 1;
  const bool flat = t.dim() == 2 && t.size(0) == batch && t.size(1) == num_gt;
  TORCH_CHECK_VALUE(column || flat, name, ": expected shape ", shape_str({batch, num_gt, 1}), " or ",
                    shape_str({batch, num_gt}), " (one per gt box), got ", shape_str(t.sizes()));
  return column ? t.squeeze(2) : t;
}

}  // namespace

void check_tal_devices(ALWA_TAL_PARAMS) {
  check_device(pd_bboxes, "pd_bboxes", pd_scores, "pd_scores");
  check_device(anc_points, "anc_points", pd_scores, "pd_scores");
  check_device(gt_labels, "gt_labels", pd_scores, "pd_scores");
  check_device(gt_bboxes, "gt_bboxes", pd_scores, "pd_scores");
  check_device(mask_gt, "mask_gt", pd_scores, "pd_scores");
}

TalPlan plan_task_aligned_assign(ALWA_TAL_PARAMS, OutputAllocator allocate_scores) {
  // (devices: checked by TalOps before its device guard, check_tal_devices)
  TalPlan plan;
  check_float_dtype(pd_scores, "pd_scores", "");
  TORCH_CHECK_VALUE(pd_scores.dim() == 3 && pd_scores.size(2) >= 1,
                    "pd_scores: expected shape (batch, anchors, num_classes) with num_classes >= 1, got ",
                    shape_str(pd_scores.sizes()));
  plan.batch = pd_scores.size(0);
  plan.num_anchors = pd_scores.size(1);
  plan.num_classes = pd_scores.size(2);
  check_float_dtype(pd_bboxes, "pd_bboxes", "");
  check_shape(pd_bboxes, "pd_bboxes", {plan.batch, plan.num_anchors, 4}, "(batch, anchors, 4: x1 y1 x2 y2)");
  TORCH_CHECK_VALUE(anc_points.is_floating_point(), "anc_points: expected a floating-point tensor, got ",
                    anc_points.scalar_type());
  check_shape(anc_points, "anc_points", {plan.num_anchors, 2}, "(anchors, 2: x y)");
  check_float_dtype(gt_bboxes, "gt_bboxes", "");
  TORCH_CHECK_VALUE(gt_bboxes.dim() == 3 && gt_bboxes.size(0) == plan.batch && gt_bboxes.size(2) == 4,
                    "gt_bboxes: expected shape (", plan.batch, ", max_boxes, 4), got ", shape_str(gt_bboxes.sizes()));
  plan.num_gt = gt_bboxes.size(1);
  TORCH_CHECK_VALUE(gt_labels.scalar_type() != at::kBool && !gt_labels.is_complex(),
                    "gt_labels: expected class indices (a real tensor), got ", gt_labels.scalar_type());
  const at::Tensor labels = per_gt(gt_labels, "gt_labels", plan.batch, plan.num_gt);
  const at::Tensor valid = per_gt(mask_gt, "mask_gt", plan.batch, plan.num_gt);

  TORCH_CHECK_VALUE(topk >= 1 && topk <= plan.num_anchors, "topk: expected 1 <= topk <= anchors (",
                    plan.num_anchors, "), got ", topk);
  TORCH_CHECK_VALUE(topk2 >= 1 && topk2 <= plan.num_anchors, "topk2: expected 1 <= topk2 <= anchors (",
                    plan.num_anchors, "), got ", topk2);
  check_nonnegative(alpha, "alpha");
  check_nonnegative(beta, "beta");
  check_positive(eps, "eps");
  check_nonnegative(min_side, "min_side");
  plan.topk = topk;
  plan.topk2 = topk2;
  plan.alpha = alpha;
  plan.beta = beta;
  plan.eps = eps;
  plan.min_side = min_side;
  plan.logits = logits;

  // Everything is computed in float32, or in float64 where the scores or the boxes are.
  const bool wide = pd_scores.scalar_type() == at::kDouble || pd_bboxes.scalar_type() == at::kDouble ||
                    gt_bboxes.scalar_type() == at::kDouble;
  const auto compute = wide ? at::kDouble : at::kFloat;
  plan.scores = pd_scores.contiguous();
  plan.pred = pd_bboxes.to(compute).contiguous();
  plan.anchors = anc_points.to(compute).contiguous();
  plan.gt = gt_bboxes.to(compute).contiguous();
  plan.labels = labels.to(at::kLong).contiguous();
  plan.valid = valid.ne(0).contiguous();
  plan.bboxes_dtype = gt_bboxes.scalar_type();
  plan.scores_dtype = at::promote_types(pd_scores.scalar_type(), pd_bboxes.scalar_type());

  const auto options = pd_scores.options();
  const int64_t B = plan.batch, A = plan.num_anchors;
  plan.target_labels = at::empty({B, A}, options.dtype(at::kLong));
  plan.target_bboxes = at::empty({B, A, 4}, options.dtype(compute));
  plan.target_scores = allocate_scores({B, A, plan.num_classes}, options.dtype(compute));
  plan.fg_mask = at::empty({B, A}, options.dtype(at::kBool));
  plan.target_gt_idx = at::empty({B, A}, options.dtype(at::kLong));
  return plan;
}

TalOutputs TalPlan::outputs() const {
  return {target_labels, target_bboxes.to(bboxes_dtype), target_scores.to(scores_dtype), fg_mask, target_gt_idx};
}

}  // namespace alwa
