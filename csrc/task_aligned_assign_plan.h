// Argument parsing, validation and output allocation of task_aligned_assign, shared by the CPU
// and CUDA launchers: the one place the op checks its arguments.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "alwa/task_aligned_assign.h"
#include "common/backend.h"
#include "common/checks.h"

namespace alwa {

// task_aligned_assign's parameters in schema order, and the same names passing them on.
#define ALWA_TAL_PARAMS                                                                         \
  const at::Tensor &pd_scores, const at::Tensor &pd_bboxes, const at::Tensor &anc_points,       \
      const at::Tensor &gt_labels, const at::Tensor &gt_bboxes, const at::Tensor &mask_gt,      \
      int64_t topk, int64_t topk2, double alpha, double beta, double eps, double min_side, bool logits
#define ALWA_TAL_ARGS \
  pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, topk, topk2, alpha, beta, eps, min_side, \
      logits

// (target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx)
using TalOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct TalPlan {
  int64_t batch, num_anchors, num_classes, num_gt;
  int64_t topk, topk2;
  double alpha, beta, eps, min_side;
  bool logits;  // the scores are logits: their sigmoid is taken where one is read
  // Inputs as the kernels read them, contiguous: scores in their dtype; predicted boxes,
  // anchors and gt boxes in the boxes' compute type (float32, or float64); labels int64
  // (truncated, as ultralytics' .long()); valid bool, (B, n).
  at::Tensor scores, pred, anchors, labels, gt, valid;
  // The outputs as the kernels write them (target boxes and scores in the compute type), and
  // the dtypes they are returned in (ultralytics': the gt boxes', and the scores' and
  // predicted boxes' promoted).
  at::Tensor target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx;
  at::ScalarType bboxes_dtype, scores_dtype;

  // The outputs in their dtypes.
  TalOutputs outputs() const;
};

void check_tal_devices(ALWA_TAL_PARAMS);
// allocate_scores: the (B, A, C) target scores' memory (the CPU reuses the last call's).
TalPlan plan_task_aligned_assign(ALWA_TAL_PARAMS, OutputAllocator allocate_scores);

template <class score_t, class T>
TalArgs<score_t, T> make_tal_args(const TalPlan& plan) {
  TalArgs<score_t, T> args;
  args.scores = plan.scores.const_data_ptr<score_t>();
  args.pred = plan.pred.const_data_ptr<T>();
  args.anchors = plan.anchors.const_data_ptr<T>();
  args.labels = plan.labels.const_data_ptr<int64_t>();
  args.gt = plan.gt.const_data_ptr<T>();
  args.valid = plan.valid.const_data_ptr<bool>();
  args.batch = plan.batch;
  args.num_anchors = plan.num_anchors;
  args.num_classes = plan.num_classes;
  args.num_gt = plan.num_gt;
  args.params.topk = plan.topk;
  args.params.topk2 = plan.topk2;
  args.params.alpha = static_cast<T>(plan.alpha);
  args.params.beta = static_cast<T>(plan.beta);
  args.params.alpha_form = power_form(plan.alpha);
  args.params.beta_form = power_form(plan.beta);
  args.params.eps = static_cast<T>(plan.eps);
  args.params.min_side = static_cast<T>(plan.min_side);
  args.params.logits = plan.logits;
  args.target_labels = plan.target_labels.mutable_data_ptr<int64_t>();
  args.target_boxes = plan.target_bboxes.mutable_data_ptr<T>();
  args.target_scores = plan.target_scores.mutable_data_ptr<T>();
  args.fg_mask = plan.fg_mask.mutable_data_ptr<bool>();
  args.target_gt_idx = plan.target_gt_idx.mutable_data_ptr<int64_t>();
  return args;
}

// Calls f(score_t{}, T{}) for the plan's scores dtype (float32/64, float16, bfloat16) and
// boxes compute type (float or double).
template <class F>
void dispatch_tal_types(const TalPlan& plan, F&& f) {
  const bool boxes_double = plan.pred.scalar_type() == at::kDouble;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.scores.scalar_type(), "task_aligned_assign", [&] {
    if (boxes_double) {
      f(scalar_t{}, double{});
    } else {
      f(scalar_t{}, float{});
    }
  });
}

// The operator of a backend, made from its function that runs a plan and the guard it needs
// around a call. The devices are checked before the guard is made.
template <void (*Run)(TalPlan&), class DeviceGuard, OutputAllocator AllocateScores = fresh_output>
struct TalOps {
  static TalOutputs assign(ALWA_TAL_PARAMS) {
    check_tal_devices(ALWA_TAL_ARGS);
    const DeviceGuard guard(pd_scores.device());
    TalPlan plan = plan_task_aligned_assign(ALWA_TAL_ARGS, AllocateScores);
    Run(plan);
    return plan.outputs();
  }
  static void register_in(torch::Library& m) { m.impl("task_aligned_assign", &assign); }
};

}  // namespace alwa
