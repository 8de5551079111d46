"""Anchor deltas: alwa_ext.encode_deltas / decode_deltas (mmdet's DeltaXYWHBBoxCoder) and
box_loss(..., box_format="deltas"), which decodes in the kernel, on every device.

The fused results are compared with alwa_ext.reference (run on the CPU) and with the unfused
pipeline: decode then box_loss for the IoU kinds, the deltas against the encoded targets for
the coordinate kinds.
"""
from __future__ import annotations

import math

import pytest
import torch

import alwa_ext
from helpers import reference
from alwa_ext.kinds import ALPHA_IOU_KINDS, COORDINATE_KINDS, DEFAULT_WH_RATIO_CLIP, IOU_KINDS, LOSS_KINDS
from helpers.boxes import DELTA_STDS, TOLERANCES_VS_FLOAT64, degenerate_pairs, delta_pairs
from helpers.compare import assert_close64, fused_and_reference


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_deltas_match_reference_float64(kind, reduction, device):
    deltas, anchors, target = delta_pairs(129, seed=4, device=device)
    weight = torch.rand(129, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).to(device)
    kwargs = dict(box_format="deltas", anchors=anchors, delta_means=(0.01, -0.02, 0.03, 0.0), delta_stds=DELTA_STDS,
                  reduction=reduction, weight=weight)
    fused, eager = fused_and_reference(deltas, target, kind, **kwargs)
    for a, b in zip(fused, eager):
        assert_close64(a, b)


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_deltas_equal_decode_then_loss(kind, device):
    """The fused decode gives the values and gradients of decode_deltas followed by box_loss."""
    deltas, anchors, target = delta_pairs(200, seed=9, device=device)
    deltas[:5, 2:] = torch.tensor([50.0, -60.0], dtype=torch.float64, device=device)  # beyond the dw/dh clamp
    means, clip = (0.0, 0.0, 0.0, 0.0), DEFAULT_WH_RATIO_CLIP
    extra = {"alpha": 2.0} if kind in ALPHA_IOU_KINDS else {}
    d1 = deltas.clone().requires_grad_(True)
    fused = alwa_ext.box_loss(
        d1, target, kind, box_format="deltas", anchors=anchors, delta_stds=DELTA_STDS, wh_ratio_clip=clip, **extra
    )
    (g1,) = torch.autograd.grad(fused, d1)
    d2 = deltas.clone().requires_grad_(True)
    decoded = alwa_ext.decode_deltas(d2, anchors, means, DELTA_STDS, clip)
    unfused = alwa_ext.box_loss(decoded, target, kind, **extra)
    (g2,) = torch.autograd.grad(unfused, d2)
    assert_close64(fused, unfused)
    assert_close64(g1, g2)
    assert g1[:5, 2:].abs().max() == 0  # clamped dw/dh pass no gradient


@pytest.mark.parametrize("kind", COORDINATE_KINDS)
def test_deltas_coordinate_kinds_compare_with_encoded_targets(kind, device):
    """l1/smooth_l1 with deltas: the loss of the deltas against the encoded target boxes."""
    deltas, anchors, target = delta_pairs(100, seed=11, device=device)
    d1 = deltas.clone().requires_grad_(True)
    fused = alwa_ext.box_loss(d1, target, kind, box_format="deltas", anchors=anchors, delta_stds=DELTA_STDS, beta=0.1)
    (g1,) = torch.autograd.grad(fused, d1)
    d2 = deltas.clone().requires_grad_(True)
    unfused = alwa_ext.box_loss(d2, alwa_ext.encode_deltas(target, anchors, stds=DELTA_STDS), kind, beta=0.1)
    (g2,) = torch.autograd.grad(unfused, d2)
    assert_close64(fused, unfused)
    assert_close64(g1, g2)


@pytest.mark.parametrize("kind", ["giou", "siou", "eiou", "smooth_l1"])
def test_gradcheck_deltas(kind, device):
    deltas, anchors, target = delta_pairs(6, seed=22, device=device)
    d = deltas.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: alwa_ext.box_loss(a, b, kind, box_format="deltas", anchors=anchors, delta_stds=DELTA_STDS,
                                       reduction="none"),
        (d, t),
        eps=1e-6,
        atol=1e-5,
    )


DEGENERATE_TARGETS = ("identical", "identical points", "point outside a box", "touching edges", "far apart",
                      "far apart, vertically aligned", "inverted corners", "inverted target")


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
def test_finite_on_degenerate_deltas(kind, dtype, device):
    """Zero-size anchors and targets, dw/dh far beyond the clamp, zero deltas."""
    _, target = degenerate_pairs(names=DEGENERATE_TARGETS)
    anchors = torch.tensor([[0, 0, 10, 10], [5, 5, 5, 5], [0, 0, 1, 2], [2, 2, 1, 1]] * 2, dtype=torch.float64)
    deltas = torch.tensor([[0, 0, 0, 0], [0.5, -0.5, 30, -30], [1, 1, -100, 100], [0, 0, 0, 0]] * 2, dtype=torch.float64)
    d = deltas.to(dtype=dtype, device=device).requires_grad_(True)
    t = target.to(dtype=dtype, device=device).requires_grad_(True)
    loss = alwa_ext.box_loss(d, t, kind, box_format="deltas", anchors=anchors.to(dtype=dtype, device=device),
                             reduction="none")
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(d.grad).all() and torch.isfinite(t.grad).all()


@pytest.mark.parametrize("kind", ["giou", "l1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_is_close_to_float64(kind, dtype, device):
    deltas, anchors, target = delta_pairs(200, seed=51, dtype=dtype, device=device)
    d = deltas.clone().requires_grad_(True)
    loss = alwa_ext.box_loss(d, target, kind, box_format="deltas", anchors=anchors)
    loss.backward()
    d64 = deltas.cpu().double().requires_grad_(True)
    expected = reference.box_loss(d64, target.cpu().double(), kind, box_format="deltas", anchors=anchors.cpu().double())
    expected.backward()
    tol = TOLERANCES_VS_FLOAT64[dtype]
    assert loss.dtype == dtype and d.grad.dtype == dtype
    torch.testing.assert_close(loss.cpu().double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(d.grad.cpu().double(), d64.grad, rtol=tol * 10, atol=tol * 0.1)


def test_coder_follows_mmdet_formulas(device):
    f64 = dict(dtype=torch.float64, device=device)
    anchors = torch.tensor([[10.0, 20.0, 50.0, 40.0]], **f64)  # centre (30, 30), 40 x 20
    boxes = torch.tensor([[14.0, 25.0, 62.0, 35.0]], **f64)  # centre (38, 30), 48 x 10
    expected = torch.tensor([[8 / 40 / 0.1, 0.0, math.log(48 / 40) / 0.2, math.log(10 / 20) / 0.2]], **f64)
    deltas = alwa_ext.encode_deltas(boxes, anchors, stds=DELTA_STDS)
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(alwa_ext.decode_deltas(deltas, anchors, stds=DELTA_STDS), boxes)
    # dw beyond |log(wh_ratio_clip)| is clamped: the width is at most 1000/16 times the anchor's.
    wide = alwa_ext.decode_deltas(torch.tensor([[0.0, 0.0, 50.0, -50.0]], **f64), anchors)
    torch.testing.assert_close(wide[0, 2] - wide[0, 0], torch.tensor(40 * 1000 / 16, **f64))
    torch.testing.assert_close(wide[0, 3] - wide[0, 1], torch.tensor(20 * 16 / 1000, **f64))
    clipped = alwa_ext.decode_deltas(torch.zeros(1, 4, **f64) + 3, anchors, max_shape=(35, 45))
    assert clipped[0, 2] <= 45 and clipped[0, 3] <= 35 and (clipped >= 0).all()
