"""Boxes for the tests: ordinary pairs, delta-coded pairs, the degenerate pairs, and the one
tolerance table of fused against eager reference.

Every generator draws on the CPU in float64 from its own seeded generator (the same numbers on
every device and dtype), then converts: a test on CUDA sees the boxes the CPU test sees.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

import alwa_ext

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# rtol/atol of fused vs eager reference per dtype. Half types are computed in float32 by both,
# so they differ by the final rounding: about one unit in the last place.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}
# rtol = atol of a reduced-precision result against the float64 reference on the same (rounded)
# inputs: the error the format's own rounding leaves after a float32 computation.
TOLERANCES_VS_FLOAT64 = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


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
    """xyxy boxes in ``box_format`` (xyxy or cxcywh)."""
    if box_format == "xyxy":
        return boxes
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def box_pairs(n, *, dtype=torch.float64, box_format="xyxy", seed=0, leading=None, device="cpu", scale=10.0):
    """(pred, target): ``n`` predictions (or ``leading`` shape) and targets perturbed from them."""
    generator = torch.Generator().manual_seed(seed)
    pred = random_boxes(n, generator=generator, leading=leading, scale=scale)
    target = perturbed(pred, generator=generator)
    return tuple(to_format(b, box_format).to(dtype=dtype, device=device) for b in (pred, target))


def box_weight(per, pred, seed=1):
    """A positive weight per ``"box"`` (shape (...)) or per ``"coord"`` (shape (..., 4)), or None."""
    if per is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    shape = pred.shape if per == "coord" else pred.shape[:-1]
    return (torch.rand(shape, dtype=torch.float64, generator=generator) + 0.1).to(dtype=pred.dtype, device=pred.device)


# DeltaXYWHBBoxCoder's usual normalisation in two-stage detectors: the deltas tests use it so that
# stds other than 1 are exercised.
DELTA_STDS = (0.1, 0.1, 0.2, 0.2)


def delta_pairs(n, *, seed, dtype=torch.float64, stds=DELTA_STDS, device="cpu") -> Tuple[Tensor, Tensor, Tensor]:
    """(deltas, anchors, target): deltas against ordinary anchors, and target boxes decoded near
    the anchors with ``stds``."""
    generator = torch.Generator().manual_seed(seed)
    anchors = random_boxes(n, generator=generator)
    deltas = torch.randn(n, 4, generator=generator, dtype=torch.float64) * 0.5
    target = alwa_ext.decode_deltas(torch.randn(n, 4, generator=generator, dtype=torch.float64) * 0.3, anchors, stds=stds)
    return tuple(t.to(dtype=dtype, device=device) for t in (deltas, anchors, target))


# Pairs on which peers return NaN or inf, or where a formula has a kink or a zero
# denominator; every kind must stay finite on all of them. One line a pair:
# "name: pred x1 y1 x2 y2 | target x1 y1 x2 y2". "nearly flat": GIoU's gradient exceeds
# float16's range; "point and inverted box": the centres lie outside the corners' box.
_DEGENERATE_TABLE = """
identical:                       1 1 3 3             | 1 1 3 3
zero width:                      1 1 1 3             | 0 0 2 2
zero height:                     1 1 3 1             | 0 0 2 2
identical points:                2 2 2 2             | 2 2 2 2
two points:                      0 0 0 0             | 5 5 5 5
touching edges:                  0 0 1 1             | 1 0 2 1
touching corners:                0 0 1 1             | 1 1 2 2
far apart:                       0 0 1 1             | 1000 1000 1001 1001
inverted corners:                3 3 1 1             | 0 0 2 2
identical inverted:              3 3 1 1             | 3 3 1 1
tiny, identical:                 0 0 1e-6 1e-6       | 0 0 1e-6 1e-6
tiny, touching:                  0 0 1e-6 2e-6       | 1e-6 0 2e-6 1e-6
large, areas overflow float16:   0 0 3000 2000       | 1500 1000 4000 3500
large, identical:                0 0 4000 4000       | 0 0 4000 4000
nearly flat:                     0 0 0 0             | 0 0 1 1e-7
point and inverted box:          0 0 0 0             | 0 0 0 -1
point outside a box:             0 0 0 0             | 1 1 3 3
point at a corner:               0 0 0 0             | 0 0 1 1
far apart, vertically aligned:   0 0 1 1             | 0 500 1 501
inverted target:                 0 0 4 4             | 4 4 0 0
two inverted boxes:              2 2 1 1             | 3 3 1 1
same centre, nested:             0 0 10 10           | 0 3 10 7
large coordinates:               1000 2000 1100 2150 | 1004 2001 1107 2148
large, nested:                   0 0 4000 3000       | 10 10 3990 2990
negative coordinates, identical: -5 -5 5 5           | -5 -5 5 5
zero width against zero height:  0 0 0 5             | 0 0 5 0
identical flat:                  0 0 10 0            | 0 0 10 0
tiny, nested:                    0 0 1e-6 1e-6       | 0 0 2e-6 1e-6
tinier than float32's squares:   0 0 1e-30 1e-30     | 1e-30 0 2e-30 1e-30
"""


def _parse_pairs(table):
    pairs = []
    for line in table.strip().splitlines():
        name, _, boxes = line.rpartition(":")
        pred, target = (list(map(float, side.split())) for side in boxes.split("|"))
        pairs.append((name.strip(), pred, target))
    return pairs


# (name, pred, target), xyxy.
DEGENERATE = _parse_pairs(_DEGENERATE_TABLE)
DEGENERATE_NAMES = [name for name, _, _ in DEGENERATE]
# Pairs of equal boxes of ordinary size: every kind's loss is (almost) 0 there.
IDENTICAL_ORDINARY = ("identical", "large, identical", "negative coordinates, identical")


def degenerate_rows(names: Sequence[str]) -> list:
    """Indices in :data:`DEGENERATE` of the named pairs."""
    return [DEGENERATE_NAMES.index(name) for name in names]


def degenerate_pairs(dtype=torch.float64, device="cpu", names: Optional[Sequence[str]] = None):
    """(pred, target) of the degenerate pairs (all, or the named ones in that order)."""
    rows = DEGENERATE if names is None else [DEGENERATE[i] for i in degenerate_rows(names)]
    pred = torch.tensor([r[1] for r in rows], dtype=torch.float64).to(dtype=dtype, device=device)
    target = torch.tensor([r[2] for r in rows], dtype=torch.float64).to(dtype=dtype, device=device)
    return pred, target
