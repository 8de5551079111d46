"""Fake (meta) kernels of the torch.ops.alwa operators, for torch.compile.

The schemas live in csrc/alwa.cpp, the kernels in csrc/cpu and csrc/cuda, and the autograd
of box_loss, box_iou, sigmoid_focal_loss and distribution_focal_loss in csrc/autograd (C++, at the Autograd dispatch key, so a training
call crosses from Python into C++ once); importing alwa_ext._C registers them all. A fake
kernel only computes its outputs' shapes and dtypes: argument errors are raised by the C++
kernels, in one place (csrc/box_loss_plan.cpp, csrc/focal_loss_plan.cpp, csrc/dfl_plan.cpp). The one check here is the inputs' devices,
with the C++ message: tensors on different devices reach the fake kernel rather than a real
one (a meta tensor takes the whole call there), so only it can refuse them.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (registers torch.ops.alwa)
from .kinds import COORDINATE_KINDS


def _check_devices(ref_name, ref, **tensors):
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != ref.device:
            raise ValueError(f"{name}: expected the device of {ref_name} ({ref.device}), got {tensor.device}")


def _loss_like(pred, loss, reduction):
    if reduction != "none":
        return pred.new_empty(())
    return pred.new_empty(pred.shape if loss in COORDINATE_KINDS else pred.shape[:-1])


def _gradients_like(pred, grad_pred, grad_target):
    grad_pred_out = pred.new_empty(pred.shape) if grad_pred else pred.new_empty((0,))
    grad_target_out = pred.new_empty(pred.shape) if grad_target else pred.new_empty((0,))
    return grad_pred_out, grad_target_out


# The arguments every box_loss form shares, after (grad_loss,) pred, target.
# weight, avg_factor, anchors, loss, reduction, box_format, eps, beta, alpha, focal_gamma,
# delta_means, delta_stds, wh_ratio_clip


@torch.library.register_fake("alwa::box_loss")
def _box_loss_fake(pred, target, weight, avg_factor, anchors, loss, reduction, *numbers):
    _check_devices("pred", pred, target=target, weight=weight, avg_factor=avg_factor, anchors=anchors)
    return _loss_like(pred, loss, reduction)


@torch.library.register_fake("alwa::box_loss_with_grad")
def _box_loss_with_grad_fake(pred, target, weight, avg_factor, anchors, loss, reduction, *rest):
    *_, grad_pred, grad_target = rest
    _check_devices("pred", pred, target=target, weight=weight, avg_factor=avg_factor, anchors=anchors)
    return (_loss_like(pred, loss, reduction),) + _gradients_like(pred, grad_pred, grad_target)


@torch.library.register_fake("alwa::box_loss_backward")
def _box_loss_backward_fake(grad_loss, pred, target, weight, avg_factor, anchors, loss, reduction, *rest):
    *_, grad_pred, grad_target = rest
    _check_devices("pred", pred, grad_loss=grad_loss, target=target, weight=weight, avg_factor=avg_factor, anchors=anchors)
    return _gradients_like(pred, grad_pred, grad_target)


@torch.library.register_fake("alwa::box_iou")
def _box_iou_fake(boxes1, boxes2, kind, box_format, eps):
    _check_devices("boxes1", boxes1, boxes2=boxes2)
    return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]))


@torch.library.register_fake("alwa::box_iou_backward")
def _box_iou_backward_fake(grad, boxes1, boxes2, kind, box_format, eps, grad_boxes1, grad_boxes2):
    _check_devices("boxes1", boxes1, grad=grad, boxes2=boxes2)
    grad1 = boxes1.new_empty(boxes1.shape) if grad_boxes1 else boxes1.new_empty((0,))
    grad2 = boxes2.new_empty(boxes2.shape) if grad_boxes2 else boxes2.new_empty((0,))
    return grad1, grad2


def _focal_loss_like(logits, reduction):
    return logits.new_empty(logits.shape if reduction == "none" else ())


@torch.library.register_fake("alwa::sigmoid_focal_loss")
def _sigmoid_focal_loss_fake(logits, targets, weight, avg_factor, alpha, gamma, reduction):
    _check_devices("logits", logits, targets=targets, weight=weight, avg_factor=avg_factor)
    return _focal_loss_like(logits, reduction)


@torch.library.register_fake("alwa::sigmoid_focal_loss_with_grad")
def _sigmoid_focal_loss_with_grad_fake(logits, targets, weight, avg_factor, alpha, gamma, reduction):
    _check_devices("logits", logits, targets=targets, weight=weight, avg_factor=avg_factor)
    return _focal_loss_like(logits, reduction), logits.new_empty(logits.shape)


def _dfl_loss_like(pred_dist, reduction):
    return pred_dist.new_empty(pred_dist.shape[:-1] if reduction == "none" else ())


@torch.library.register_fake("alwa::distribution_focal_loss")
def _distribution_focal_loss_fake(pred_dist, target, weight, avg_factor, reduction):
    _check_devices("pred_dist", pred_dist, target=target, weight=weight, avg_factor=avg_factor)
    return _dfl_loss_like(pred_dist, reduction)


@torch.library.register_fake("alwa::distribution_focal_loss_with_grad")
def _distribution_focal_loss_with_grad_fake(pred_dist, target, weight, avg_factor, reduction):
    _check_devices("pred_dist", pred_dist, target=target, weight=weight, avg_factor=avg_factor)
    return _dfl_loss_like(pred_dist, reduction), pred_dist.new_empty(pred_dist.shape)


@torch.library.register_fake("alwa::task_aligned_assign")
def _task_aligned_assign_fake(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, *options):
    _check_devices("pd_scores", pd_scores, pd_bboxes=pd_bboxes, anc_points=anc_points, gt_labels=gt_labels,
                   gt_bboxes=gt_bboxes, mask_gt=mask_gt)
    batch, anchors, classes = pd_scores.shape
    return (
        pd_scores.new_empty((batch, anchors), dtype=torch.int64),
        gt_bboxes.new_empty((batch, anchors, 4)),
        pd_scores.new_empty((batch, anchors, classes), dtype=torch.promote_types(pd_scores.dtype, pd_bboxes.dtype)),
        pd_scores.new_empty((batch, anchors), dtype=torch.bool),
        pd_scores.new_empty((batch, anchors), dtype=torch.int64),
    )


@torch.library.register_fake("alwa::distribution_expectation")
def _distribution_expectation_fake(pred_dist):
    return pred_dist.new_empty(pred_dist.shape[:-1])


@torch.library.register_fake("alwa::distribution_expectation_backward")
def _distribution_expectation_backward_fake(grad, pred_dist):
    _check_devices("pred_dist", pred_dist, grad=grad)
    return pred_dist.new_empty(pred_dist.shape)
