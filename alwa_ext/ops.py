"""Fake (meta) kernels and autograd formulas of the torch.ops.alwa operators.

The schemas live in csrc/alwa.cpp and the kernels in csrc/cpu and csrc/cuda; importing
alwa_ext._C registers them. What is here lets torch.compile trace the ops (fake kernels) and
autograd differentiate them (register_autograd).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers torch.ops.alwa)
from .kinds import AVG_FACTOR_EPS, COORDINATE_KINDS, IOU_KINDS


# --------------------------------------------------------------------------- box_loss


@torch.library.register_fake("alwa::box_loss")
def _box_loss_fake(
    pred,
    target,
    weight,
    avg_factor,
    anchors,
    loss,
    reduction,
    box_format,
    eps,
    beta,
    alpha,
    focal_gamma,
    delta_means,
    delta_stds,
    wh_ratio_clip,
    grad_pred,
    grad_target,
):
    if reduction == "none":
        out = pred.new_empty(pred.shape if loss in COORDINATE_KINDS else pred.shape[:-1])
    else:
        out = pred.new_empty(())
    grad_pred_out = pred.new_empty(pred.shape) if grad_pred else pred.new_empty((0,))
    grad_target_out = pred.new_empty(pred.shape) if grad_target else pred.new_empty((0,))
    return out, grad_pred_out, grad_target_out


def _box_loss_setup_context(ctx, inputs, output):
    (pred, target, weight, avg_factor, anchors, loss, reduction, box_format, *loss_args) = inputs
    grad_pred, grad_target = loss_args[-2:]
    loss_out, grad_pred_out, grad_target_out = output
    needs = ctx.needs_input_grad
    if (needs[0] and not grad_pred) or (needs[1] and not grad_target):
        raise RuntimeError(
            "alwa::box_loss: an input requires grad but its gradient was not asked for "
            "(grad_pred/grad_target=False); call alwa_ext.box_loss, which sets them"
        )
    ctx.iou_kind = loss in IOU_KINDS
    ctx.reduction = reduction
    ctx.weight_per_coord = weight is not None and weight.shape == pred.shape
    # Gradients w.r.t. weight and avg_factor are rare; they need the unweighted losses, which
    # backward recomputes from the inputs kept only in that case.
    # (eps, beta, alpha, focal_gamma, delta_means, delta_stds, wh_ratio_clip)
    ctx.loss_args = (loss, box_format, *loss_args[:-2])
    # Per-coordinate losses of deltas against encoded target boxes: each element depends on two
    # target coordinates, so grad_target_out (the gradient of their sum) cannot be scaled
    # element by element; backward reruns the op with grad_loss folded into the weight.
    ctx.target_vjp = needs[1] and reduction == "none" and box_format == "deltas" and not ctx.iou_kind
    keep_inputs = needs[2] or needs[3] or ctx.target_vjp
    ctx.save_for_backward(
        grad_pred_out if needs[0] else None,
        grad_target_out if needs[1] and not ctx.target_vjp else None,
        pred if keep_inputs else None,
        target if keep_inputs else None,
        weight if keep_inputs else None,
        avg_factor if keep_inputs else None,
        loss_out if needs[3] else None,
        anchors if keep_inputs else None,
    )


def _expand_grad(ctx, grad_loss: Tensor) -> Tensor:
    # grad_loss is 0-dim after a reduction, per box for IoU kinds with "none", per coordinate
    # for L1 kinds with "none": make it broadcast against (..., 4).
    if ctx.reduction == "none" and ctx.iou_kind:
        return grad_loss.unsqueeze(-1)
    return grad_loss


def _box_loss_backward(ctx, grad_loss, _grad_pred_out_grad, _grad_target_out_grad):
    grad_pred_out, grad_target_out, pred, target, weight, avg_factor, loss_out, anchors = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad = _expand_grad(ctx, grad_loss)
    grad_pred = grad_pred_out * grad if needs[0] else None
    grad_target = grad_target_out * grad if needs[1] and not ctx.target_vjp else None
    if ctx.target_vjp:
        loss, box_format, *numbers = ctx.loss_args
        vjp_weight = grad_loss if weight is None else grad_loss * (weight if ctx.weight_per_coord else weight.unsqueeze(-1))
        _, _, grad_target = torch.ops.alwa.box_loss(
            pred.detach(), target.detach(), vjp_weight, None, anchors, loss, "sum", box_format, *numbers, False, True
        )
    grad_weight = grad_avg_factor = None
    if needs[2]:
        loss, box_format, *numbers = ctx.loss_args
        unweighted, _, _ = torch.ops.alwa.box_loss(
            pred.detach(), target.detach(), None, None, anchors, loss, "none", box_format, *numbers, False, False
        )
        scaled = grad_loss
        if ctx.reduction == "mean":
            count = unweighted.numel()
            divisor = (avg_factor + AVG_FACTOR_EPS) if avg_factor is not None else max(count, 1)
            scaled = grad_loss / divisor
        grad_weight = unweighted * scaled
        if ctx.weight_per_coord and ctx.iou_kind:
            grad_weight = (grad_weight * 0.25).unsqueeze(-1).expand(weight.shape)
        elif not ctx.weight_per_coord and not ctx.iou_kind:
            grad_weight = grad_weight.sum(-1)
        grad_weight = grad_weight.to(weight.dtype)
    if needs[3]:
        grad_avg_factor = (-grad_loss * loss_out / (avg_factor + AVG_FACTOR_EPS)).to(avg_factor.dtype)
    # anchors and the non-tensor arguments are constants.
    return (grad_pred, grad_target, grad_weight, grad_avg_factor) + (None,) * 13


torch.library.register_autograd("alwa::box_loss", _box_loss_backward, setup_context=_box_loss_setup_context)


# --------------------------------------------------------------------------- box_iou


@torch.library.register_fake("alwa::box_iou")
def _box_iou_fake(boxes1, boxes2, kind, box_format, eps):
    return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]))


@torch.library.register_fake("alwa::box_iou_backward")
def _box_iou_backward_fake(grad, boxes1, boxes2, kind, box_format, eps, grad_boxes1, grad_boxes2):
    grad1 = boxes1.new_empty(boxes1.shape) if grad_boxes1 else boxes1.new_empty((0,))
    grad2 = boxes2.new_empty(boxes2.shape) if grad_boxes2 else boxes2.new_empty((0,))
    return grad1, grad2


def _box_iou_setup_context(ctx, inputs, output):
    boxes1, boxes2, kind, box_format, eps = inputs
    ctx.args = (kind, box_format, eps)
    ctx.save_for_backward(boxes1, boxes2)


def _box_iou_backward(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad1, grad2 = torch.ops.alwa.box_iou_backward(grad, boxes1, boxes2, *ctx.args, needs[0], needs[1])
    return (grad1 if needs[0] else None), (grad2 if needs[1] else None), None, None, None


torch.library.register_autograd("alwa::box_iou", _box_iou_backward, setup_context=_box_iou_setup_context)
