"""Plain PyTorch eager implementations of the fused ops.

Written from the formulas (not from the C++), with autograd providing the gradients. Tests use
them as the independent reference and benchmarks as the "eager" provider. Half-precision
inputs are computed in float32, like the kernels, and the result cast back.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

IOU_KINDS = ("iou", "giou", "diou", "ciou")
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def to_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    if box_format == "xyxy":
        return boxes
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def iou_family_loss(pred: Tensor, target: Tensor, kind: str, eps: float) -> Tensor:
    """Per-box IoU-family loss of xyxy boxes (leading shape)."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    pw, ph = torch.relu(px2 - px1), torch.relu(py2 - py1)
    tw, th = torch.relu(tx2 - tx1), torch.relu(ty2 - ty1)
    inter = torch.relu(torch.minimum(px2, tx2) - torch.maximum(px1, tx1)) * torch.relu(
        torch.minimum(py2, ty2) - torch.maximum(py1, ty1)
    )
    union = pw * ph + tw * th - inter
    iou = inter / (union + eps)
    loss = 1 - iou
    if kind == "iou":
        return loss
    # The enclosing box spans every corner, so it also contains the centres of inverted boxes.
    enclose_w = torch.maximum(torch.maximum(px1, px2), torch.maximum(tx1, tx2)) - torch.minimum(
        torch.minimum(px1, px2), torch.minimum(tx1, tx2)
    )
    enclose_h = torch.maximum(torch.maximum(py1, py2), torch.maximum(ty1, ty2)) - torch.minimum(
        torch.minimum(py1, py2), torch.minimum(ty1, ty2)
    )
    if kind == "giou":
        enclose_area = enclose_w * enclose_h
        return loss + (enclose_area - union) / (enclose_area + eps)
    centre_dist2 = ((tx1 + tx2) - (px1 + px2)).pow(2) / 4 + ((ty1 + ty2) - (py1 + py2)).pow(2) / 4
    diag2 = enclose_w.pow(2) + enclose_h.pow(2) + eps
    loss = loss + centre_dist2 / diag2
    if kind == "diou":
        return loss
    v = (4 / math.pi**2) * (torch.atan2(tw, th) - torch.atan2(pw, ph)).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return loss + alpha * v


def reduce_loss(loss: Tensor, reduction: str, avg_factor: Optional[Union[float, Tensor]]) -> Tensor:
    """mmdet's weight_reduce_loss, minus the weighting; empty inputs reduce to 0."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if avg_factor is None:
        return total / max(loss.numel(), 1)
    return total / (avg_factor + AVG_FACTOR_EPS)


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
    """Eager twin of :func:`alwa_ext.box_loss` (same signature and conventions)."""
    out_dtype = pred.dtype
    dtype = _compute_dtype(pred.dtype)
    pred, target = pred.to(dtype), target.to(dtype)
    if weight is not None:
        weight = weight.to(dtype)
    if loss in IOU_KINDS:
        per_element = iou_family_loss(to_xyxy(pred, box_format), to_xyxy(target, box_format), loss, eps)
        if weight is not None:
            per_element = per_element * (weight.mean(-1) if weight.shape == pred.shape else weight)
    else:
        diff = pred - target
        if loss == "l1":
            per_element = diff.abs()
        elif loss == "smooth_l1":
            abs_diff = diff.abs()
            per_element = torch.where(abs_diff < beta, 0.5 * diff * diff / beta, abs_diff - 0.5 * beta)
        else:
            raise ValueError(f"loss: unknown kind {loss!r}")
        if weight is not None:
            per_element = per_element * (weight if weight.shape == pred.shape else weight.unsqueeze(-1))
    if reduction == "none":
        avg_factor = None
    return reduce_loss(per_element, reduction, avg_factor).to(out_dtype)


def box_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", *, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    """Brute-force pairwise similarity: every pair through :func:`iou_family_loss`."""
    out_dtype = boxes1.dtype
    dtype = _compute_dtype(boxes1.dtype)
    a = to_xyxy(boxes1.to(dtype), box_format)[:, None, :]
    b = to_xyxy(boxes2.to(dtype), box_format)[None, :, :]
    a, b = torch.broadcast_tensors(a, b)
    return (1 - iou_family_loss(a, b, kind, eps)).to(out_dtype)
