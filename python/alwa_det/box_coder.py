"""Delta box coder: boxes as offsets of a reference box (anchor or proposal).

The semantics are mmdet's ``DeltaXYWHBBoxCoder``: with reference centre (px, py) and size
(pw, ph), a box (gx, gy, gw, gh) is ((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph)),
then normalised as (delta - means) / stds. Faster R-CNN's RoI head uses stds (0.1, 0.1, 0.2, 0.2),
i.e. torchvision's "weights" (10, 10, 5, 5).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

# Predicted log-scale changes are clamped so exp() cannot blow a box up by more than 1000/16.
MAX_LOG_SCALE = abs(math.log(16.0 / 1000.0))
# Zero-size ground truth (padding, or a degenerate annotation) must not give log(0) = -inf:
# such targets are weighted zero, but 0 * inf would still be NaN.
MIN_SIZE = 1e-3


class DeltaBoxCoder:
    def __init__(
        self,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        max_log_scale: float = MAX_LOG_SCALE,
    ):
        if len(means) != 4 or len(stds) != 4:
            raise ValueError(f"means and stds need 4 values each, got {means!r} and {stds!r}")
        if any(s <= 0 for s in stds):
            raise ValueError(f"stds must be positive, got {stds!r}")
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.max_log_scale = float(max_log_scale)

    def _normaliser(self, like: Tensor):
        means = torch.tensor(self.means, dtype=like.dtype, device=like.device)
        stds = torch.tensor(self.stds, dtype=like.dtype, device=like.device)
        return means, stds

    def encode(self, reference: Tensor, boxes: Tensor) -> Tensor:
        """Deltas (..., 4) that turn ``reference`` boxes into ``boxes`` (both xyxy, broadcastable)."""
        ref_w = (reference[..., 2] - reference[..., 0]).clamp(min=MIN_SIZE)
        ref_h = (reference[..., 3] - reference[..., 1]).clamp(min=MIN_SIZE)
        ref_x = (reference[..., 0] + reference[..., 2]) * 0.5
        ref_y = (reference[..., 1] + reference[..., 3]) * 0.5
        box_w = (boxes[..., 2] - boxes[..., 0]).clamp(min=MIN_SIZE)
        box_h = (boxes[..., 3] - boxes[..., 1]).clamp(min=MIN_SIZE)
        box_x = (boxes[..., 0] + boxes[..., 2]) * 0.5
        box_y = (boxes[..., 1] + boxes[..., 3]) * 0.5
        deltas = torch.stack(
            [(box_x - ref_x) / ref_w, (box_y - ref_y) / ref_h, torch.log(box_w / ref_w), torch.log(box_h / ref_h)],
            dim=-1,
        )
        means, stds = self._normaliser(deltas)
        return (deltas - means) / stds

    def decode(self, reference: Tensor, deltas: Tensor, image_size: Optional[Sequence[int]] = None) -> Tensor:
        """Boxes (..., 4) xyxy from ``deltas`` applied to ``reference``; clipped to (height, width) if given."""
        means, stds = self._normaliser(deltas)
        deltas = deltas * stds + means
        ref_w = reference[..., 2] - reference[..., 0]
        ref_h = reference[..., 3] - reference[..., 1]
        ref_x = (reference[..., 0] + reference[..., 2]) * 0.5
        ref_y = (reference[..., 1] + reference[..., 3]) * 0.5
        dw = deltas[..., 2].clamp(-self.max_log_scale, self.max_log_scale)
        dh = deltas[..., 3].clamp(-self.max_log_scale, self.max_log_scale)
        centre_x = ref_x + deltas[..., 0] * ref_w
        centre_y = ref_y + deltas[..., 1] * ref_h
        half_w = ref_w * torch.exp(dw) * 0.5
        half_h = ref_h * torch.exp(dh) * 0.5
        boxes = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=-1)
        if image_size is not None:
            height, width = image_size
            boxes = clip_boxes(boxes, height, width)
        return boxes


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
