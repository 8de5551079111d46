"""Public functional API: fused box-regression losses and pairwise IoU."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from . import _validation as check
from .ops import BOX_FORMATS, IOU_KINDS, LOSS_KINDS, REDUCTIONS


def box_loss(
    pred: Tensor,
    target: Tensor,
    loss: str = "giou",
    *,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
    box_format: str = "xyxy",
    eps: float = 1e-7,
    beta: float = 1.0,
) -> Tensor:
    """Box-regression loss of ``pred`` against ``target``, fused into one pass over the boxes.

    Args:
        pred, target: boxes of shape ``(..., 4)`` and one dtype (float32/64, float16, bfloat16;
            half types are computed in float32). ``box_format`` is ``"xyxy"`` (x1, y1, x2, y2)
            or ``"cxcywh"`` (centre, width, height); ``l1``/``smooth_l1`` act on the four raw
            numbers whatever the format.
        loss: ``"iou"`` (1 - IoU), ``"giou"``, ``"diou"``, ``"ciou"``, ``"l1"`` or
            ``"smooth_l1"`` (quadratic below ``beta``, mmdet's convention).
        weight: per box ``(...)`` or per coordinate ``(..., 4)``; IoU kinds average a
            per-coordinate weight over the last dim (mmdet's convention).
        reduction: ``"none"`` (one value per box for IoU kinds, per coordinate for L1 kinds),
            ``"sum"`` or ``"mean"``. Empty inputs reduce to 0.
        avg_factor: with ``"mean"``, divide the sum by ``avg_factor + finfo(float32).eps``
            instead of the element count (mmdet's ``weight_reduce_loss``). A Python number or a
            0-dim tensor, so a count of positives can stay on the device. Ignored by ``"none"``;
            an error with ``"sum"``.
        eps: stabiliser, placed as torchvision places it: IoU = I / (U + eps), GIoU's enclosing
            area + eps, DIoU/CIoU's squared diagonal + eps, CIoU's alpha = v / (1 - IoU + v + eps).
        beta: SmoothL1 threshold (> 0).

    Conventions: widths and heights are clamped at 0 (inverted corners are an empty box); CIoU
    uses ``atan2(w, h)`` for the aspect term (finite for zero-height boxes) and treats alpha as a
    constant, as torchvision does (mmdet's CIoU also zeroes alpha where IoU < 0.5; ours does
    not). Every finite input gives a finite loss and finite gradients.

    Gradients are computed in the same pass as the loss when ``pred`` (or ``target``) requires
    grad, and backward only scales them; first-order gradients only.
    """
    check.check_choice("loss", loss, LOSS_KINDS)
    check.check_choice("reduction", reduction, REDUCTIONS)
    check.check_choice("box_format", box_format, BOX_FORMATS)
    check.check_eps(eps)
    check.check_positive("beta", beta)
    check.check_boxes("pred", pred)
    check.check_boxes("target", target)
    check.check_same("target", target, "pred", pred)
    if weight is not None:
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            raise ValueError(f"weight: expected a floating-point tensor, got {weight!r:.80}")
        if weight.shape != pred.shape and weight.shape != pred.shape[:-1]:
            raise ValueError(
                f"weight: expected shape {tuple(pred.shape[:-1])} (per box) or {tuple(pred.shape)} "
                f"(per coordinate), got {tuple(weight.shape)}"
            )
        check.check_device("weight", weight, "pred", pred)
    if reduction == "none":
        avg_factor = None
    elif avg_factor is not None:
        if reduction == "sum":
            raise ValueError("avg_factor: cannot be used with reduction='sum'")
        if isinstance(avg_factor, Tensor):
            if avg_factor.dim() != 0:
                raise ValueError(f"avg_factor: expected a 0-dim tensor, got shape {tuple(avg_factor.shape)}")
            check.check_device("avg_factor", avg_factor, "pred", pred)
        else:
            # A fill kernel on the device: no host-to-device copy, no sync.
            avg_factor = torch.full((), float(avg_factor), dtype=torch.float64, device=pred.device)
    grad_enabled = torch.is_grad_enabled()
    out, _, _ = torch.ops.alwa.box_loss(
        pred,
        target,
        weight,
        avg_factor,
        loss,
        reduction,
        box_format,
        float(eps),
        float(beta),
        grad_enabled and pred.requires_grad,
        grad_enabled and target.requires_grad,
    )
    return out


def box_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", *, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    """Pairwise similarity of ``boxes1`` (M, 4) and ``boxes2`` (N, 4): an (M, N) tensor.

    ``kind`` is ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"``; each value is 1 minus the
    corresponding :func:`box_loss`, with the same conventions and ``eps``. Differentiable.
    """
    check.check_choice("kind", kind, IOU_KINDS)
    check.check_choice("box_format", box_format, BOX_FORMATS)
    check.check_eps(eps)
    check.check_boxes("boxes1", boxes1)
    check.check_boxes("boxes2", boxes2)
    if boxes1.dim() != 2:
        raise ValueError(f"boxes1: expected shape (M, 4), got {tuple(boxes1.shape)}")
    if boxes2.dim() != 2:
        raise ValueError(f"boxes2: expected shape (N, 4), got {tuple(boxes2.shape)}")
    check.check_same("boxes2", boxes2, "boxes1", boxes1, shape=False)
    return torch.ops.alwa.box_iou(boxes1, boxes2, kind, box_format, float(eps))
