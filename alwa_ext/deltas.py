"""Box <-> delta coding with mmdet's ``DeltaXYWHBBoxCoder`` semantics, in plain PyTorch.

A box (x1, y1, x2, y2) is coded against an anchor (same format) as

    dx = ((gx - ax) / aw - means[0]) / stds[0]      dw = (log(gw / aw) - means[2]) / stds[2]
    dy = ((gy - ay) / ah - means[1]) / stds[1]      dh = (log(gh / ah) - means[3]) / stds[3]

with (gx, gy, gw, gh) and (ax, ay, aw, ah) the centres and sizes. Decoding inverts this and
clamps the denormalised dw, dh to ``+-|log(wh_ratio_clip)|`` first. ``alwa_ext.box_loss(...,
box_format="deltas")`` fuses exactly these formulas into its kernel; both functions are
differentiable (anchors are usually constants).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _validation as check
from .kinds import DEFAULT_DELTA_MEANS, DEFAULT_DELTA_STDS, DEFAULT_WH_RATIO_CLIP


def check_coding(means: Sequence[float], stds: Sequence[float]) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Validates delta means and stds (4 finite numbers each, stds > 0); returns them as tuples."""
    try:
        means = tuple(float(m) for m in means)
        stds = tuple(float(s) for s in stds)
    except (TypeError, ValueError) as error:
        raise ValueError(f"delta_means/delta_stds: expected sequences of 4 numbers ({error})") from None
    if len(means) != 4 or not all(check.is_finite_number(m) for m in means):
        raise ValueError(f"delta_means: expected 4 finite numbers, got {means}")
    if len(stds) != 4 or not all(check.is_finite_number(s) and s > 0 for s in stds):
        raise ValueError(f"delta_stds: expected 4 finite numbers > 0, got {stds}")
    return means, stds


def max_log_ratio(wh_ratio_clip: float) -> float:
    check.check_positive("wh_ratio_clip", wh_ratio_clip)
    return abs(math.log(wh_ratio_clip))


def _check_pair(name: str, boxes: Tensor, anchors: Tensor) -> None:
    if not isinstance(boxes, Tensor) or boxes.shape[-1:] != (4,) or not boxes.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor of shape (..., 4)")
    if not isinstance(anchors, Tensor) or anchors.shape != boxes.shape or not anchors.is_floating_point():
        raise ValueError(
            f"anchors: expected a floating-point tensor of the shape of {name} {tuple(boxes.shape)}, "
            f"got {tuple(anchors.shape) if isinstance(anchors, Tensor) else type(anchors).__name__}"
        )
    if anchors.device != boxes.device:
        raise ValueError(f"anchors: expected the device of {name} ({boxes.device}), got {anchors.device}")


def decode_deltas(
    deltas: Tensor,
    anchors: Tensor,
    means: Sequence[float] = DEFAULT_DELTA_MEANS,
    stds: Sequence[float] = DEFAULT_DELTA_STDS,
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
    max_shape: Optional[Tuple[int, int]] = None,
) -> Tensor:
    """Boxes (x1, y1, x2, y2) from ``deltas`` (..., 4) against ``anchors`` (..., 4, xyxy).

    ``max_shape`` (height, width), if given, clamps the boxes to the image as mmdet does; the
    fused loss never clamps. The result has the dtype of ``deltas`` (anchors are cast to it).
    """
    _check_pair("deltas", deltas, anchors)
    means, stds = check_coding(means, stds)
    limit = max_log_ratio(wh_ratio_clip)
    anchors = anchors.to(deltas.dtype)
    denorm = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
    dx, dy, dw, dh = denorm.unbind(-1)
    dw = dw.clamp(min=-limit, max=limit)
    dh = dh.clamp(min=-limit, max=limit)
    ax1, ay1, ax2, ay2 = anchors.unbind(-1)
    aw, ah = ax2 - ax1, ay2 - ay1
    cx = (ax1 + ax2) * 0.5 + aw * dx
    cy = (ay1 + ay2) * 0.5 + ah * dy
    w, h = aw * dw.exp(), ah * dh.exp()
    boxes = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)
    if max_shape is not None:
        height, width = max_shape[0], max_shape[1]
        x = boxes[..., 0::2].clamp(min=0, max=width)
        y = boxes[..., 1::2].clamp(min=0, max=height)
        boxes = torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
    return boxes


def encode_deltas(
    boxes: Tensor,
    anchors: Tensor,
    means: Sequence[float] = DEFAULT_DELTA_MEANS,
    stds: Sequence[float] = DEFAULT_DELTA_STDS,
    eps: float = 1e-7,
) -> Tensor:
    """Deltas of ``boxes`` (..., 4, xyxy) against ``anchors`` (..., 4, xyxy).

    Widths and heights of boxes and anchors are floored at ``eps`` so degenerate boxes give
    finite deltas (mmdet's encoder gives inf/nan there; ``eps=0`` reproduces it for every box of
    non-negative size). ``box_loss(deltas, boxes, "l1", box_format="deltas", anchors=anchors)``
    compares ``deltas`` with exactly ``encode_deltas(boxes, anchors, eps=eps)``.
    """
    _check_pair("boxes", boxes, anchors)
    means, stds = check_coding(means, stds)
    check.check_eps(eps)
    anchors = anchors.to(boxes.dtype)
    floor = torch.full((), float(eps), dtype=boxes.dtype, device=boxes.device)
    ax1, ay1, ax2, ay2 = anchors.unbind(-1)
    x1, y1, x2, y2 = boxes.unbind(-1)
    aw, ah = torch.maximum(ax2 - ax1, floor), torch.maximum(ay2 - ay1, floor)
    w, h = torch.maximum(x2 - x1, floor), torch.maximum(y2 - y1, floor)
    dx = (0.5 * (x1 + x2) - 0.5 * (ax1 + ax2)) / aw
    dy = (0.5 * (y1 + y2) - 0.5 * (ay1 + ay2)) / ah
    deltas = torch.stack((dx, dy, torch.log(w / aw), torch.log(h / ah)), dim=-1)
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)
