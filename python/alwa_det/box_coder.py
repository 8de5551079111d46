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

# Predicted log-scale changes are clamped at |log(16 / 1000)|, so exp() cannot blow a box up by
# more than 1000/16.
WH_RATIO_CLIP = 16.0 / 1000.0


class DeltaBoxCoder:
    def __init__(
        self,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        wh_ratio_clip: float = WH_RATIO_CLIP,
    ):
        if len(means) != 4 or len(stds) != 4:
            raise ValueError(f"means and stds need 4 values each, got {means!r} and {stds!r}")
        if any(s <= 0 for s in stds):
            raise ValueError(f"stds must be positive, got {stds!r}")
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.wh_ratio_clip = float(wh_ratio_clip)

    def encode(self, reference: Tensor, boxes: Tensor) -> Tensor:
        """Deltas (..., 4) that turn ``reference`` boxes into ``boxes`` (both xyxy, same shape).

        Zero-size boxes (padding) give finite deltas: alwa_ext floors sizes at a tiny epsilon.
        """
        return alwa_ext.encode_deltas(boxes, reference, self.means, self.stds)

    def decode(self, reference: Tensor, deltas: Tensor, image_size: Optional[Sequence[int]] = None) -> Tensor:
        """Boxes (..., 4) xyxy from ``deltas`` applied to ``reference``; clipped to (height, width) if given."""
        max_shape = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        return alwa_ext.decode_deltas(deltas, reference, self.means, self.stds, self.wh_ratio_clip, max_shape)
