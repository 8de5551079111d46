"""Public functional API: fused box-regression losses and pairwise IoU."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _validation as check
from .deltas import check_coding, max_log_ratio
from .kinds import (
    ALPHA_IOU_KINDS,
    BOX_FORMATS,
    DEFAULT_DELTA_MEANS,
    DEFAULT_DELTA_STDS,
    DEFAULT_WH_RATIO_CLIP,
    IOU_KINDS,
    LOSS_BOX_FORMATS,
    LOSS_KINDS,
    REDUCTIONS,
)


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
    alpha: float = 1.0,
    focal_gamma: float = 0.0,
    anchors: Optional[Tensor] = None,
    delta_means: Sequence[float] = DEFAULT_DELTA_MEANS,
    delta_stds: Sequence[float] = DEFAULT_DELTA_STDS,
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
) -> Tensor:
    """Box-regression loss of ``pred`` against ``target``, fused into one pass over the boxes.

    Args:
        pred, target: boxes of shape ``(..., 4)`` and one dtype (float32/64, float16, bfloat16;
            half types are computed in float32). ``box_format`` is ``"xyxy"`` (x1, y1, x2, y2),
            ``"cxcywh"`` (centre, width, height) or ``"deltas"`` (below); with xyxy/cxcywh,
            ``l1``/``smooth_l1`` act on the four raw numbers whatever the format.
        loss: ``"iou"`` (1 - IoU), ``"giou"``, ``"diou"``, ``"ciou"``, ``"eiou"`` (Focal-EIoU
            paper), ``"siou"`` (SIoU paper, the paper's signs), ``"l1"`` or ``"smooth_l1"``
            (quadratic below ``beta``, mmdet's convention). Formulas: README, "Conventions".
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
        alpha: Alpha-IoU power (> 0) for iou/giou/diou/ciou: ``1 - IoU**alpha`` plus each
            penalty raised to ``alpha``; 1 gives the plain losses (an error with other kinds).
        focal_gamma: Focal-EIoU (``loss="eiou"`` only): the loss times ``IoU**focal_gamma``,
            that factor a constant for the gradient; 0 (default) leaves plain EIoU.
        anchors, delta_means, delta_stds, wh_ratio_clip: with ``box_format="deltas"``, ``pred``
            holds mmdet ``DeltaXYWHBBoxCoder`` deltas against ``anchors`` (same shape, xyxy,
            constants) and ``target`` holds xyxy boxes. IoU kinds decode the deltas (dw, dh
            clamped at ``|log(wh_ratio_clip)|``) and compare the decoded boxes with ``target``,
            as ``box_loss(decode_deltas(pred, anchors, ...), target, ...)`` would (mmdet's
            ``reg_decoded_bbox=True``). ``l1``/``smooth_l1`` compare the deltas themselves with
            ``encode_deltas(target, anchors, ..., eps=eps)``, as mmdet's default pipeline does
            (L1 on the regression targets); ``eps`` must then be > 0. Gradients are w.r.t.
            the deltas.

    Conventions: widths and heights are clamped at 0 (inverted corners are an empty box); CIoU
    uses ``atan2(w, h)`` for the aspect term (finite for zero-height boxes) and treats alpha as a
    constant, as torchvision does (mmdet's CIoU also zeroes alpha where IoU < 0.5; ours does
    not). Every finite input gives a finite loss and finite gradients.

    Gradients are computed in the same pass as the loss when ``pred`` (or ``target``) requires
    grad, and backward only scales them; first-order gradients only.
    """
    check.check_choice("loss", loss, LOSS_KINDS)
    check.check_choice("reduction", reduction, REDUCTIONS)
    check.check_choice("box_format", box_format, LOSS_BOX_FORMATS)
    check.check_eps(eps)
    check.check_positive("beta", beta)
    check.check_positive("alpha", alpha)
    if alpha != 1 and loss not in ALPHA_IOU_KINDS:
        raise ValueError(f"alpha: only {', '.join(ALPHA_IOU_KINDS)} have an Alpha-IoU form; got alpha={alpha} with loss={loss!r}")
    check.check_nonnegative("focal_gamma", focal_gamma)
    if focal_gamma != 0 and loss != "eiou":
        raise ValueError(f"focal_gamma: only used by loss='eiou'; got focal_gamma={focal_gamma} with loss={loss!r}")
    delta_means, delta_stds = check_coding(delta_means, delta_stds)
    max_log_ratio(wh_ratio_clip)
    check.check_boxes("pred", pred)
    check.check_boxes("target", target)
    check.check_same("target", target, "pred", pred)
    if box_format == "deltas":
        if anchors is None:
            raise ValueError("anchors: required with box_format='deltas'")
        if not isinstance(anchors, Tensor) or not anchors.is_floating_point():
            raise ValueError(f"anchors: expected a floating-point tensor, got {anchors!r:.80}")
        if anchors.shape != pred.shape:
            raise ValueError(f"anchors: expected the shape of pred {tuple(pred.shape)}, got {tuple(anchors.shape)}")
        check.check_device("anchors", anchors, "pred", pred)
        if loss not in IOU_KINDS and eps <= 0:
            raise ValueError(
                "eps: must be > 0 for l1/smooth_l1 with box_format='deltas' (it floors the widths "
                "and heights of the encoded target boxes)"
            )
    elif anchors is not None:
        raise ValueError(f"anchors: only used with box_format='deltas', got box_format={box_format!r}")
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
        anchors,
        loss,
        reduction,
        box_format,
        float(eps),
        float(beta),
        float(alpha),
        float(focal_gamma),
        list(delta_means),
        list(delta_stds),
        float(wh_ratio_clip),
        grad_enabled and pred.requires_grad,
        grad_enabled and target.requires_grad,
    )
    return out


def box_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", *, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    """Pairwise similarity of ``boxes1`` (M, 4) and ``boxes2`` (N, 4): an (M, N) tensor.

    ``kind`` is ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"``; each value is 1 minus the
    corresponding :func:`box_loss`, with the same conventions and ``eps``. Differentiable.
    """
    check.check_choice("kind", kind, ALPHA_IOU_KINDS)
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
