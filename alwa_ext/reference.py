"""Plain PyTorch eager implementations of the fused ops.

Written from the formulas (not from the C++), with autograd providing the gradients. Tests use
them as the independent reference and benchmarks as the "eager" provider. Half-precision
inputs are computed in float32, like the kernels, and the result cast back.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .deltas import decode_deltas, encode_deltas
from .kinds import AVG_FACTOR_EPS, DEFAULT_DELTA_MEANS, DEFAULT_DELTA_STDS, DEFAULT_WH_RATIO_CLIP, IOU_KINDS


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def to_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    if box_format == "xyxy":
        return boxes
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def alpha_power(x: Tensor, alpha: float) -> Tensor:
    """x**alpha for x >= 0 (Alpha-IoU), 0 for x <= 0 with gradient 0 there (x itself for alpha = 1)."""
    if alpha == 1:
        return x
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)) ** alpha, torch.zeros_like(x))


def iou_family_loss(
    pred: Tensor, target: Tensor, kind: str, eps: float, alpha: float = 1.0, focal_gamma: float = 0.0
) -> Tensor:
    """Per-box IoU-family loss of xyxy boxes (leading shape)."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    pw, ph = torch.relu(px2 - px1), torch.relu(py2 - py1)
    tw, th = torch.relu(tx2 - tx1), torch.relu(ty2 - ty1)
    inter = torch.relu(torch.minimum(px2, tx2) - torch.maximum(px1, tx1)) * torch.relu(
        torch.minimum(py2, ty2) - torch.maximum(py1, ty1)
    )
    area_p, area_t = pw * ph, tw * th
    # = area_p + area_t - inter, summed so that nested boxes give the outer area exactly.
    union = torch.maximum(area_p, area_t) + (torch.minimum(area_p, area_t) - inter)
    iou = inter / (union + eps)
    loss = 1 - alpha_power(iou, alpha)
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
        return loss + alpha_power((enclose_area - union) / (enclose_area + eps), alpha)
    dx = ((tx1 + tx2) - (px1 + px2)) / 2
    dy = ((ty1 + ty2) - (py1 + py2)) / 2
    centre_dist2 = dx.pow(2) + dy.pow(2)
    diag2 = enclose_w.pow(2) + enclose_h.pow(2) + eps
    if kind == "eiou":
        # Focal-EIoU paper: 1 - IoU + rho^2 / c^2 + (w - wg)^2 / cw^2 + (h - hg)^2 / ch^2.
        loss = (
            1
            - iou
            + centre_dist2 / diag2
            + (pw - tw).pow(2) / (enclose_w.pow(2) + eps)
            + (ph - th).pow(2) / (enclose_h.pow(2) + eps)
        )
        if focal_gamma != 0:
            loss = loss * iou.detach().pow(focal_gamma)
        return loss
    if kind == "siou":
        # SIoU paper, as written in issue 7 (the loss grows as the boxes move apart).
        sigma = torch.linalg.vector_norm(torch.stack((dx, dy), dim=-1), dim=-1) + eps
        sin_alpha = torch.clamp(dy.abs() / sigma, max=1.0)
        angle_cost = 1 - 2 * torch.sin(torch.asin(sin_alpha) - math.pi / 4).pow(2)
        gamma = 2 - angle_cost
        distance_cost = (1 - torch.exp(-gamma * (dx / (enclose_w + eps)).pow(2))) + (
            1 - torch.exp(-gamma * (dy / (enclose_h + eps)).pow(2))
        )
        omega_w = (pw - tw).abs() / (torch.maximum(pw, tw) + eps)
        omega_h = (ph - th).abs() / (torch.maximum(ph, th) + eps)
        shape_cost = (1 - torch.exp(-omega_w)).pow(4) + (1 - torch.exp(-omega_h)).pow(4)
        return 1 - iou + (distance_cost + shape_cost) / 2
    loss = loss + alpha_power(centre_dist2 / diag2, alpha)
    if kind == "diou":
        return loss
    v = (4 / math.pi**2) * (torch.atan2(tw, th) - torch.atan2(pw, ph)).pow(2)
    with torch.no_grad():
        aspect_weight = v / (1 - iou + v + eps)
    return loss + alpha_power(aspect_weight * v, alpha)


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
    alpha: float = 1.0,
    focal_gamma: float = 0.0,
    anchors: Optional[Tensor] = None,
    delta_means: Sequence[float] = DEFAULT_DELTA_MEANS,
    delta_stds: Sequence[float] = DEFAULT_DELTA_STDS,
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
) -> Tensor:
    """Eager twin of :func:`alwa_ext.box_loss` (same signature and conventions).

    With ``box_format="deltas"`` it decodes (IoU kinds) or encodes the target (L1 kinds) with
    :mod:`alwa_ext.deltas`, then proceeds as for xyxy boxes.
    """
    out_dtype = pred.dtype
    dtype = _compute_dtype(pred.dtype)
    pred, target = pred.to(dtype), target.to(dtype)
    if weight is not None:
        weight = weight.to(dtype)
    if box_format == "deltas":
        anchors = anchors.to(dtype)
        if loss in IOU_KINDS:
            pred = decode_deltas(pred, anchors, delta_means, delta_stds, wh_ratio_clip)
        else:
            target = encode_deltas(target, anchors, delta_means, delta_stds, eps=eps)
        box_format = "xyxy"
    if loss in IOU_KINDS:
        per_element = iou_family_loss(
            to_xyxy(pred, box_format), to_xyxy(target, box_format), loss, eps, alpha, focal_gamma
        )
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
