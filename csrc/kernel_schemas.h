// The schemas of the ops every backend implements (box_loss and its forms, box_iou and its
// backward, sigmoid_focal_loss, distribution_focal_loss, task_aligned_assign, alwa_step,
// alwa_pooled_update), written once: alwa.cpp declares them as torch.ops.alwa; the test build
// that runs the CUDA kernels on the host (tests/cuda_host/) declares the same schemas in a
// namespace of its own.
#pragma once

#include <torch/library.h>

#include <string>
#include <vector>

namespace alwa {

inline void define_kernel_ops(torch::Library& m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  // The box-regression loss (alwa_ext.box_loss). Its autograd (csrc/autograd/) computes the
  // gradient in the same pass as the loss (box_loss_with_grad) or in box_loss_backward,
  // whichever is faster for the kind. With box_format "deltas", pred holds deltas against
  // `anchors` (mmdet DeltaXYWHBBoxCoder: delta_means, delta_stds, wh_ratio_clip) and the
  // gradient is w.r.t. the deltas; anchors are constants.
  const std::string box_loss_args =
      "Tensor pred, Tensor target, Tensor? weight, Tensor? avg_factor, Tensor? anchors, "
      "str loss, str reduction, str box_format, float eps, float beta, float alpha, "
      "float focal_gamma, float[] delta_means, float[] delta_stds, float wh_ratio_clip";
  m.def(("box_loss(" + box_loss_args + ") -> Tensor").c_str(), tags);
  // The loss and, where asked for, the gradients of the (weighted, reduced) loss w.r.t. pred
  // and target (else empty tensors).
  m.def(("box_loss_with_grad(" + box_loss_args +
         ", bool grad_pred, bool grad_target) -> (Tensor, Tensor, Tensor)")
            .c_str(),
        tags);
  // The vector-Jacobian products of box_loss for grad_loss = d output / d loss.
  m.def(("box_loss_backward(Tensor grad_loss, " + box_loss_args +
         ", bool grad_pred, bool grad_target) -> (Tensor, Tensor)")
            .c_str(),
        tags);
  m.def("box_iou(Tensor boxes1, Tensor boxes2, str kind, str box_format, float eps) -> Tensor",
        tags);
  m.def(
      "box_iou_backward(Tensor grad, Tensor boxes1, Tensor boxes2, str kind, str box_format, "
      "float eps, bool grad_boxes1, bool grad_boxes2) -> (Tensor, Tensor)",
      tags);
  // The sigmoid focal loss (alwa_ext.sigmoid_focal_loss) of logits (..., C) against int64 class
  // indices (...) (C: background) or float targets (..., C); alpha < 0 turns the class weighting
  // off. Its autograd (csrc/autograd/) computes the gradient in the same pass as the loss
  // (sigmoid_focal_loss_with_grad: the loss and d loss / d logits).
  const std::string focal_loss_args =
      "Tensor logits, Tensor targets, Tensor? weight, Tensor? avg_factor, float alpha, "
      "float gamma, str reduction";
  m.def(("sigmoid_focal_loss(" + focal_loss_args + ") -> Tensor").c_str(), tags);
  m.def(("sigmoid_focal_loss_with_grad(" + focal_loss_args + ") -> (Tensor, Tensor)").c_str(),
        tags);
  // The distribution focal loss (alwa_ext.distribution_focal_loss) of logits (..., num_bins)
  // against float distances (...) in bins; weight per distance or per box (target's shape
  // without its last dim). Its autograd computes the gradient in the same pass as the loss
  // (distribution_focal_loss_with_grad).
  const std::string dfl_args =
      "Tensor pred_dist, Tensor target, Tensor? weight, Tensor? avg_factor, str reduction";
  m.def(("distribution_focal_loss(" + dfl_args + ") -> Tensor").c_str(), tags);
  m.def(("distribution_focal_loss_with_grad(" + dfl_args + ") -> (Tensor, Tensor)").c_str(), tags);
  // The distribution's expectation (alwa_ext.distribution_expectation: GFL's Integral,
  // ultralytics' box decoding) of logits (..., num_bins), and its backward (the softmax taken
  // again: nothing of the forward is kept).
  m.def("distribution_expectation(Tensor pred_dist) -> Tensor", tags);
  m.def("distribution_expectation_backward(Tensor grad, Tensor pred_dist) -> Tensor", tags);
  // The task-aligned assignment (alwa_ext.task_aligned_assign; ultralytics' TaskAlignedAssigner,
  // alwa/task_aligned_assign.h): targets for every anchor from scores (B, A, C), predicted boxes
  // (B, A, 4) (or their logits: `logits`), anchor points (A, 2) and gts (B, n, ...). No gradient: its autograd kernel runs
  // it below autograd. Returns (target_labels, target_bboxes, target_scores, fg_mask,
  // target_gt_idx).
  m.def(
      "task_aligned_assign(Tensor pd_scores, Tensor pd_bboxes, Tensor anc_points, Tensor gt_labels, "
      "Tensor gt_bboxes, Tensor mask_gt, int topk, int topk2, float alpha, float beta, float eps, "
      "float min_side, bool logits) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
      tags);
  // ALWA's mode ("alwa1" or "alwa2", alwa_ext.ALWA's `mode`) is `alwa_mode` here: torch's
  // dispatch machinery takes `mode` as a keyword of its own, and an argument of that name
  // breaks opcheck and torch.compile.
  // ALWA, one training iteration (alwa_ext.ALWA; statistic "raw" or "detrended", its
  // `statistic`): returns the weights in force (λcls in the
  // dtype of loss_cls, λreg in that of loss_reg), records the losses in the float64 window
  // (or counts them in `skipped` when not finite) and, once `interval` values are recorded,
  // reassigns λcls (or leaves it and counts the window in `held`, alwa_update.h) and empties
  // the window. interval = 0 records only (distributed path).
  m.def(
      "alwa_step(Tensor loss_cls, Tensor loss_reg, Tensor(a!) weights, Tensor(b!) window, "
      "Tensor(c!) step, Tensor(d!) skipped, Tensor(e!) num_updates, Tensor(f!) held, "
      "int interval, str alwa_mode, str update, str statistic) -> (Tensor, Tensor)",
      tags);
  // ALWA, end of a window pooled across ranks: rank_windows stacks every rank's window
  // (num_ranks, 2, 5); they are merged in rank order, λcls is reassigned, the window emptied.
  m.def(
      "alwa_pooled_update(Tensor rank_windows, Tensor(a!) weights, Tensor(b!) window, "
      "Tensor(c!) num_updates, Tensor(d!) held, str alwa_mode, str statistic) -> ()",
      tags);
}

}  // namespace alwa
