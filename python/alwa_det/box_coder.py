"""Delta box coder: boxes as offsets of a reference box (anchor or proposal).

mmdet's ``DeltaXYWHBBoxCoder`` semantics, computed by alwa_ext (``encode_deltas`` /
``decode_deltas``, and fused into ``box_loss(..., box_format="deltas")``); this class only
holds one coder's settings so the detectors and the loss agree on them. Faster R-CNN's RoI head
uses stds (0.1, 0.1, 0.2, 0.2), i.e. torchvision's "weights" (10, 10, 5, 5).
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor

import alwa_ext
from alwa_ext.kinds import DEFAULT_DELTA_MEANS, DEFAULT_DELTA_STDS, DEFAULT_WH_RATIO_CLIP


class DeltaBoxCoder:
    """Arguments in alwa_ext's order: ``encode(boxes, reference)``, ``decode(deltas, reference)``.

    Predicted log-scale changes are clamped at ``|log(wh_ratio_clip)|`` (16/1000 by default), so
    exp() cannot blow a box up by more than 1000/16.
    """

    def __init__(
        self,
        means: Sequence[float] = DEFAULT_DELTA_MEANS,
        stds: Sequence[float] = DEFAULT_DELTA_STDS,
        wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
    ):
        if len(means) != 4 or len(stds) != 4:
            raise ValueError(f"means and stds need 4 values each, got {means!r} and {stds!r}")
        if any(s <= 0 for s in stds):
            raise ValueError(f"stds must be positive, got {stds!r}")
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.wh_ratio_clip = float(wh_ratio_clip)

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """Deltas (..., 4) that turn ``reference`` boxes into ``boxes`` (both xyxy, same shape).

        Zero-size boxes (padding) give finite deltas: alwa_ext floors sizes at a tiny epsilon.
        """
        return alwa_ext.encode_deltas(boxes, reference, self.means, self.stds)

    def decode(self, deltas: Tensor, reference: Tensor, image_size: Optional[Sequence[int]] = None) -> Tensor:
        """Boxes (..., 4) xyxy from ``deltas`` applied to ``reference``; clipped to (height, width) if given."""
        max_shape = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        return alwa_ext.decode_deltas(deltas, reference, self.means, self.stds, self.wh_ratio_clip, max_shape)
