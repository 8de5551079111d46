"""Shared test helpers: box generators, tolerances, device parametrisation."""
from __future__ import annotations

import pytest
import torch

import alwa_ext  # noqa: F401  (registers torch.ops.alwa)

IOU_KINDS = ("iou", "giou", "diou", "ciou")
# Kinds box_iou also takes; box_loss adds EIoU, SIoU and the coordinate-wise kinds.
LOSS_KINDS = IOU_KINDS + ("eiou", "siou", "l1", "smooth_l1")
REDUCTIONS = ("none", "mean", "sum")
BOX_FORMATS = ("xyxy", "cxcywh")
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# rtol/atol of fused vs eager reference per dtype. Half types are computed in float32 by both,
# so they differ by the final rounding: about one unit in the last place.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def random_boxes(n, *, dtype=torch.float64, device="cpu", generator=None, scale=10.0, leading=None):
    """Ordinary xyxy boxes: positive sizes, corners in [0, scale)."""
    shape = (n,) if leading is None else tuple(leading)
    xy = torch.rand(*shape, 2, dtype=torch.float64, generator=generator) * scale
    wh = torch.rand(*shape, 2, dtype=torch.float64, generator=generator) * scale / 2 + scale / 100
    return torch.cat([xy, xy + wh], dim=-1).to(dtype=dtype, device=device)


def perturbed(boxes, *, generator=None, noise=0.3):
    """Targets near the predictions, so every kind has overlapping and non-overlapping pairs."""
    jitter = torch.randn(boxes.shape, dtype=torch.float64, generator=generator) * noise * boxes.abs().mean().item()
    out = boxes.double().cpu() + jitter
    x1, x2 = torch.minimum(out[..., 0], out[..., 2]), torch.maximum(out[..., 0], out[..., 2])
    y1, y2 = torch.minimum(out[..., 1], out[..., 3]), torch.maximum(out[..., 1], out[..., 3])
    return torch.stack([x1, y1, x2, y2], -1).to(boxes)


def to_format(boxes, box_format):
    if box_format == "xyxy":
        return boxes
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def degenerate_pairs(dtype=torch.float64):
    """(pred, target) xyxy pairs on which peers return NaN or inf; ours must stay finite."""
    rows = [
        ([1, 1, 3, 3], [1, 1, 3, 3]),  # identical
        ([1, 1, 1, 3], [0, 0, 2, 2]),  # zero width
        ([1, 1, 3, 1], [0, 0, 2, 2]),  # zero height
        ([2, 2, 2, 2], [2, 2, 2, 2]),  # identical zero-area boxes
        ([0, 0, 0, 0], [5, 5, 5, 5]),  # two points
        ([0, 0, 1, 1], [1, 0, 2, 1]),  # touching edges
        ([0, 0, 1, 1], [1, 1, 2, 2]),  # touching corners
        ([0, 0, 1, 1], [1000, 1000, 1001, 1001]),  # far apart
        ([3, 3, 1, 1], [0, 0, 2, 2]),  # inverted corners
        ([3, 3, 1, 1], [3, 3, 1, 1]),  # identical inverted boxes
        ([0, 0, 1e-6, 1e-6], [0, 0, 1e-6, 1e-6]),  # tiny, identical
        ([0, 0, 1e-6, 2e-6], [1e-6, 0, 2e-6, 1e-6]),  # tiny, touching
        ([0, 0, 3000, 2000], [1500, 1000, 4000, 3500]),  # large: areas overflow float16
        ([0, 0, 4000, 4000], [0, 0, 4000, 4000]),  # large identical
        ([0, 0, 0, 0], [0, 0, 1, 1e-7]),  # nearly flat: GIoU's gradient exceeds float16's range
        ([0, 0, 0, 0], [0, 0, 0, -1]),  # point and inverted box: centres outside the corners' box
    ]
    pred = torch.tensor([r[0] for r in rows], dtype=torch.float64).to(dtype)
    target = torch.tensor([r[1] for r in rows], dtype=torch.float64).to(dtype)
    return pred, target
