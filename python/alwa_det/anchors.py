"""Anchor boxes on the FPN grid.

Each level of stride ``s`` places, at the centre of every feature cell ((x + 0.5) * s,
(y + 0.5) * s), one anchor per (ratio, scale) pair with area (base_scale * s * scale)^2 and
height / width = ratio. The flat order is (row, column, anchor), the order in which the heads'
(N, A*K, H, W) outputs are flattened, so anchor i and prediction i always belong together.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


class AnchorGenerator:
    def __init__(self, strides: Sequence[int], base_scale: float, scales: Sequence[float], ratios: Sequence[float]):
        if not strides or not scales or not ratios:
            raise ValueError("strides, scales and ratios must not be empty")
        if base_scale <= 0 or any(s <= 0 for s in scales) or any(r <= 0 for r in ratios):
            raise ValueError(f"anchor sizes must be positive: base_scale={base_scale}, scales={scales}, ratios={ratios}")
        self.strides = tuple(int(s) for s in strides)
        self.base_scale = float(base_scale)
        self.scales = tuple(float(s) for s in scales)
        self.ratios = tuple(float(r) for r in ratios)

    @property
    def anchors_per_location(self) -> int:
        return len(self.scales) * len(self.ratios)

    def cell_anchors(self, stride: int) -> Tensor:
        """(A, 4) anchors centred on the origin for one level, ratio-major then scale."""
        shapes = []
        for ratio in self.ratios:
            for scale in self.scales:
                size = self.base_scale * stride * scale
                width = size / math.sqrt(ratio)
                height = size * math.sqrt(ratio)
                shapes.append([-width / 2, -height / 2, width / 2, height / 2])
        return torch.tensor(shapes, dtype=torch.float32)

    def grid_anchors(self, feature_sizes: Sequence[Tuple[int, int]], device=None) -> List[Tensor]:
        """One (H*W*A, 4) tensor per level for feature maps of the given (H, W)."""
        if len(feature_sizes) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature sizes, got {len(feature_sizes)}")
        per_level = []
        for (height, width), stride in zip(feature_sizes, self.strides):
            centres_x = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * stride
            centres_y = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * stride
            grid_y, grid_x = torch.meshgrid(centres_y, centres_x, indexing="ij")
            shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)
            per_level.append((shifts + self.cell_anchors(stride).to(device)).reshape(-1, 4))
        return per_level
