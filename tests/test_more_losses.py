"""EIoU, SIoU, Alpha-IoU and fused delta decoding (issue 7).

Every fused result is compared with alwa_ext.reference, which is written from the formulas in
plain PyTorch (autograd supplies its gradients).
"""
from __future__ import annotations

import math

import pytest
import torch

import alwa_ext
from helpers.opcheck import opcheck_box_loss
from alwa_ext import reference

NEW_IOU_KINDS = ("eiou", "siou")
ALPHA_KINDS = ("iou", "giou", "diou", "ciou")
ALL_IOU_KINDS = ALPHA_KINDS + NEW_IOU_KINDS
COORD_KINDS = ("l1", "smooth_l1")
# (kind, extra keyword arguments): every new code path of the header.
LOSS_VARIANTS = (
    [("eiou", {}), ("eiou", {"focal_gamma": 0.5}), ("siou", {})]
    + [(kind, {"alpha": a}) for kind in ALPHA_KINDS for a in (3.0, 0.5)]
    + [(kind, {}) for kind in ALPHA_KINDS]  # the plain kinds, through the reworked header
)


def random_boxes(n: int, seed: int, dtype=torch.float64, scale: float = 10.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale * 0.6 + 0.05 * scale
    return torch.cat((centre - size / 2, centre + size / 2), dim=-1).to(dtype)


def box_pairs(n: int, seed: int, dtype=torch.float64):
    """Targets and predictions near them (most overlap, some do not)."""
    target = random_boxes(n, seed, dtype)
    g = torch.Generator().manual_seed(seed + 1000)
    jitter = torch.randn(n, 4, generator=g, dtype=torch.float64) * 2.0
    pred = (target.double() + jitter).to(dtype)
    return pred, target


def anchors_and_deltas(n: int, seed: int, dtype=torch.float64, stds=(0.1, 0.1, 0.2, 0.2)):
    anchors = random_boxes(n, seed + 7, dtype)
    g = torch.Generator().manual_seed(seed + 3)
    deltas = (torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    target = alwa_ext.decode_deltas(
        torch.randn(n, 4, generator=g, dtype=torch.float64).to(dtype) * 0.3, anchors, stds=stds
    )
    return deltas, anchors, target


def to_cxcywh(boxes):
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def fused_and_reference(pred, target, kind, **kwargs):
    """Loss and gradients (w.r.t. pred and target) of the fused op and the reference."""
    results = []
    for fn in (alwa_ext.box_loss, reference.box_loss):
        p = pred.detach().clone().requires_grad_(True)
        t = target.detach().clone().requires_grad_(True)
        out = fn(p, t, kind, **kwargs)
        g = torch.randn_like(out, generator=torch.Generator().manual_seed(5)) if out.dim() else torch.ones_like(out)
        grad_p, grad_t = torch.autograd.grad(out, (p, t), g)
        results.append((out.detach(), grad_p, grad_t))
    return results


def assert_close64(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ values and gradients


@pytest.mark.parametrize("kind,extra", LOSS_VARIANTS)
@pytest.mark.parametrize("box_format", ["xyxy", "cxcywh"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_reference_float64(kind, extra, box_format, reduction):
    pred, target = box_pairs(257, seed=1)
    if box_format == "cxcywh":
        pred, target = to_cxcywh(pred), to_cxcywh(target)
    weight = torch.rand(257, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (loss, gp, gt), (ref, rgp, rgt) = fused_and_reference(
        pred, target, kind, box_format=box_format, reduction=reduction, weight=weight, **extra
    )
    assert_close64(loss, ref)
    assert_close64(gp, rgp)
    assert_close64(gt, rgt)


@pytest.mark.parametrize("kind", ALL_IOU_KINDS + COORD_KINDS)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_deltas_match_reference_float64(kind, reduction):
    deltas, anchors, target = anchors_and_deltas(129, seed=4)
    kwargs = dict(
        box_format="deltas", anchors=anchors, delta_means=(0.01, -0.02, 0.03, 0.0),
        delta_stds=(0.1, 0.1, 0.2, 0.2), reduction=reduction,
        weight=torch.rand(129, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6)),
    )
    (loss, gp, gt), (ref, rgp, rgt) = fused_and_reference(deltas, target, kind, **kwargs)
    assert_close64(loss, ref)
    assert_close64(gp, rgp)
    assert_close64(gt, rgt)


@pytest.mark.parametrize("kind", ALL_IOU_KINDS)
def test_deltas_equal_decode_then_loss(kind):
    """The fused decode gives the values and gradients of decode_deltas followed by box_loss."""
    deltas, anchors, target = anchors_and_deltas(200, seed=9)
    deltas[:5, 2:] = torch.tensor([50.0, -60.0], dtype=torch.float64)  # beyond the dw/dh clamp
    stds, means, clip = (0.1, 0.1, 0.2, 0.2), (0.0, 0.0, 0.0, 0.0), 16 / 1000
    extra = {"alpha": 2.0} if kind in ALPHA_KINDS else {}
    d1 = deltas.clone().requires_grad_(True)
    fused = alwa_ext.box_loss(
        d1, target, kind, box_format="deltas", anchors=anchors, delta_stds=stds, wh_ratio_clip=clip, **extra
    )
    (g1,) = torch.autograd.grad(fused, d1)
    d2 = deltas.clone().requires_grad_(True)
    decoded = alwa_ext.decode_deltas(d2, anchors, means, stds, clip)
    unfused = alwa_ext.box_loss(decoded, target, kind, **extra)
    (g2,) = torch.autograd.grad(unfused, d2)
    assert_close64(fused, unfused)
    assert_close64(g1, g2)
    assert g1[:5, 2:].abs().max() == 0  # clamped dw/dh pass no gradient


@pytest.mark.parametrize("kind", COORD_KINDS)
def test_deltas_coordinate_kinds_compare_with_encoded_targets(kind):
    """l1/smooth_l1 with deltas: the loss of the deltas against the encoded target boxes."""
    deltas, anchors, target = anchors_and_deltas(100, seed=11)
    stds = (0.1, 0.1, 0.2, 0.2)
    d1 = deltas.clone().requires_grad_(True)
    fused = alwa_ext.box_loss(d1, target, kind, box_format="deltas", anchors=anchors, delta_stds=stds, beta=0.1)
    (g1,) = torch.autograd.grad(fused, d1)
    d2 = deltas.clone().requires_grad_(True)
    unfused = alwa_ext.box_loss(d2, alwa_ext.encode_deltas(target, anchors, stds=stds), kind, beta=0.1)
    (g2,) = torch.autograd.grad(unfused, d2)
    assert_close64(fused, unfused)
    assert_close64(g1, g2)


def test_alpha_one_is_the_plain_loss():
    pred, target = box_pairs(64, seed=12)
    for kind in ALPHA_KINDS:
        torch.testing.assert_close(
            alwa_ext.box_loss(pred, target, kind, alpha=1.0, reduction="none"),
            alwa_ext.box_loss(pred, target, kind, reduction="none"),
            rtol=0, atol=0,
        )


def test_focal_eiou_is_eiou_times_constant_iou_power():
    pred, target = box_pairs(64, seed=13)
    p = pred.clone().requires_grad_(True)
    focal = alwa_ext.box_loss(p, target, "eiou", focal_gamma=0.5, reduction="sum")
    (grad_focal,) = torch.autograd.grad(focal, p)
    p = pred.clone().requires_grad_(True)
    plain = alwa_ext.box_loss(p, target, "eiou", reduction="none")
    factor = alwa_ext.box_iou(pred, target).diagonal().pow(0.5)
    (grad_plain,) = torch.autograd.grad((plain * factor).sum(), p)
    assert_close64(focal, (plain * factor).sum())
    assert_close64(grad_focal, grad_plain)


# ------------------------------------------------------------------ gradcheck and opcheck


# CIoU's aspect weight and Focal-EIoU's IoU**gamma are constants for the gradient by
# definition, so finite differences do not see the same function; the reference tests cover them.
@pytest.mark.parametrize("kind,extra", [(k, e) for k, e in LOSS_VARIANTS if k != "ciou" and "focal_gamma" not in e])
def test_gradcheck(kind, extra):
    pred, target = box_pairs(6, seed=21)
    p = pred.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: alwa_ext.box_loss(a, b, kind, reduction="none", **extra), (p, t), eps=1e-6, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["giou", "siou", "eiou", "smooth_l1"])
def test_gradcheck_deltas(kind):
    deltas, anchors, target = anchors_and_deltas(6, seed=22)
    d = deltas.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: alwa_ext.box_loss(
            a, b, kind, box_format="deltas", anchors=anchors, delta_stds=(0.1, 0.1, 0.2, 0.2), reduction="none"
        ),
        (d, t),
        eps=1e-6,
        atol=1e-5,
    )


def op_args(pred, target, kind, *, weight=None, anchors=None, reduction="mean", box_format="xyxy",
            alpha=1.0, focal_gamma=0.0, means=(0.0, 0.0, 0.0, 0.0), stds=(1.0, 1.0, 1.0, 1.0)):
    return (pred, target, weight, None, anchors, kind, reduction, box_format, 1e-7, 1.0, alpha,
            focal_gamma, list(means), list(stds), 16 / 1000, pred.requires_grad, target.requires_grad)


def opcheck_samples():
    pred, target = box_pairs(16, seed=31)
    deltas, anchors, boxes = anchors_and_deltas(16, seed=32)
    weight = torch.rand(16, dtype=torch.float64)
    yield op_args(pred.clone().requires_grad_(True), target, "eiou", focal_gamma=0.5, weight=weight)
    yield op_args(pred.clone().requires_grad_(True), target.clone().requires_grad_(True), "siou", reduction="none")
    yield op_args(pred.float(), target.float(), "ciou", alpha=3.0, reduction="sum")
    yield op_args(deltas.clone().requires_grad_(True), boxes, "giou", anchors=anchors, box_format="deltas",
                  stds=(0.1, 0.1, 0.2, 0.2))
    yield op_args(deltas.clone().requires_grad_(True), boxes.clone().requires_grad_(True), "l1", anchors=anchors,
                  box_format="deltas", reduction="none")


@pytest.mark.parametrize("args", list(opcheck_samples()), ids=lambda a: f"{a[5]}-{a[7]}")
def test_opcheck(args):
    opcheck_box_loss(args)


# ------------------------------------------------------------------ degenerate boxes


def degenerate_pairs(dtype=torch.float64):
    rows = [
        ([0, 0, 10, 10], [0, 0, 10, 10]),  # identical
        ([5, 5, 5, 5], [5, 5, 5, 5]),  # identical, zero size
        ([0, 0, 0, 0], [1, 1, 3, 3]),  # zero-size prediction
        ([0, 0, 10, 10], [10, 0, 20, 10]),  # touching
        ([0, 0, 1, 1], [1000, 1000, 1001, 1001]),  # far apart (diagonal)
        ([0, 0, 1, 1], [0, 500, 1, 501]),  # far apart, vertically aligned
        ([10, 10, 0, 0], [0, 0, 5, 5]),  # inverted prediction
        ([0, 0, 4, 4], [4, 4, 0, 0]),  # inverted target
        ([0, 0, 10, 10], [0, 3, 10, 7]),  # same centre, contained
        ([1000, 2000, 1100, 2150], [1004, 2001, 1107, 2148]),  # large coordinates
        ([0, 0, 1e-6, 1e-6], [0, 0, 2e-6, 1e-6]),  # tiny
        ([0, 0, 1e-30, 1e-30], [1e-30, 0, 2e-30, 1e-30]),  # tinier
    ]
    pred = torch.tensor([r[0] for r in rows], dtype=torch.float64).to(dtype)
    target = torch.tensor([r[1] for r in rows], dtype=torch.float64).to(dtype)
    return pred, target


DEGENERATE_VARIANTS = LOSS_VARIANTS + [("eiou", {"focal_gamma": 2.0}), ("ciou", {"alpha": 0.3})]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind,extra", DEGENERATE_VARIANTS)
@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_finite_on_degenerate_boxes(dtype, kind, extra, eps):
    pred, target = degenerate_pairs(dtype)  # float16 stores saturate: every row stays finite
    p = pred.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    loss = alwa_ext.box_loss(p, t, kind, reduction="none", eps=eps, **extra)
    loss.sum().backward()
    assert torch.isfinite(loss).all(), loss
    assert torch.isfinite(p.grad).all() and torch.isfinite(t.grad).all()
    assert (loss >= 0).all()


@pytest.mark.parametrize("kind", ALL_IOU_KINDS + COORD_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_finite_on_degenerate_deltas(kind, dtype):
    """Zero-size anchors and targets, dw/dh far beyond the clamp, zero deltas."""
    _, target = degenerate_pairs()
    target = target[:8]
    anchors = torch.tensor([[0, 0, 10, 10], [5, 5, 5, 5], [0, 0, 1, 2], [2, 2, 1, 1]] * 2, dtype=torch.float64)
    deltas = torch.tensor(
        [[0, 0, 0, 0], [0.5, -0.5, 30, -30], [1, 1, -100, 100], [0, 0, 0, 0]] * 2, dtype=torch.float64
    )
    d = deltas.to(dtype).clone().requires_grad_(True)
    t = target.to(dtype).clone().requires_grad_(True)
    loss = alwa_ext.box_loss(d, t, kind, box_format="deltas", anchors=anchors.to(dtype), reduction="none")
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(d.grad).all() and torch.isfinite(t.grad).all()


def test_degenerate_values_match_reference_where_smooth():
    pred, target = degenerate_pairs()
    keep = [0, 3, 4, 5, 6, 8, 9]  # rows where every reference formula is differentiable
    for kind, extra in LOSS_VARIANTS:
        (loss, gp, gt), (ref, rgp, rgt) = fused_and_reference(
            pred[keep], target[keep], kind, reduction="none", **extra
        )
        assert_close64(loss, ref)


def test_float16_thousands():
    pred, target = box_pairs(300, seed=41)
    pred16, target16 = (pred * 300 + 1000).half(), (target * 300 + 1000).half()
    for kind, extra in LOSS_VARIANTS:
        p = pred16.clone().requires_grad_(True)
        loss = alwa_ext.box_loss(p, target16, kind, reduction="none", **extra)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(p.grad).all()
        expected = reference.box_loss(pred16.double(), target16.double(), kind, reduction="none", **extra)
        torch.testing.assert_close(loss.double(), expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("direction", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.3, -1.0)])
def test_siou_grows_as_boxes_move_apart(direction):
    target = torch.tensor([[0.0, 0.0, 2.0, 3.0]], dtype=torch.float64)
    steps = torch.tensor([3.0, 10.0, 30.0, 100.0, 300.0], dtype=torch.float64)
    shift = steps[:, None] * torch.tensor(direction * 2, dtype=torch.float64)
    pred = torch.tensor([[0.0, 0.0, 1.0, 2.0]], dtype=torch.float64) + shift
    loss = alwa_ext.box_loss(pred, target.expand_as(pred), "siou", reduction="none")
    assert (loss > 1).all()
    assert (loss.diff() > 0).all(), loss


# ------------------------------------------------------------------ dtypes, compile, coder

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind,extra", LOSS_VARIANTS + [("giou", {"deltas": True}), ("l1", {"deltas": True})])
def test_dtypes(dtype, kind, extra):
    extra = dict(extra)
    if extra.pop("deltas", False):
        pred, anchors, target = anchors_and_deltas(200, seed=51)
        extra.update(box_format="deltas", anchors=anchors.to(dtype))
    else:
        pred, target = box_pairs(200, seed=51)
    pred, target = pred.to(dtype), target.to(dtype)
    p = pred.clone().requires_grad_(True)
    loss = alwa_ext.box_loss(p, target, kind, **extra)
    loss.backward()
    p64 = pred.double().requires_grad_(True)
    extra64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in extra.items()}
    ref = reference.box_loss(p64, target.double(), kind, **extra64)
    ref.backward()
    tol = TOLERANCE[dtype]
    assert loss.dtype == dtype and p.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(p.grad.double(), p64.grad, rtol=tol * 10, atol=tol * 0.1)


def test_compile_fullgraph():
    deltas, anchors, target = anchors_and_deltas(32, seed=61, dtype=torch.float32)

    def step(d, boxes, t):
        return (
            alwa_ext.box_loss(d, t, "siou", box_format="deltas", anchors=boxes)
            + alwa_ext.box_loss(d, t, "eiou", box_format="deltas", anchors=boxes, focal_gamma=0.5)
            + alwa_ext.box_loss(alwa_ext.decode_deltas(d, boxes), t, "ciou", alpha=3.0)
        )

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    d1 = deltas.clone().requires_grad_(True)
    d2 = deltas.clone().requires_grad_(True)
    out, expected = compiled(d1, anchors, target), step(d2, anchors, target)
    out.backward()
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(d1.grad, d2.grad)


def test_coder_follows_mmdet_formulas():
    anchors = torch.tensor([[10.0, 20.0, 50.0, 40.0]], dtype=torch.float64)  # centre (30, 30), 40 x 20
    boxes = torch.tensor([[14.0, 25.0, 62.0, 35.0]], dtype=torch.float64)  # centre (38, 30), 48 x 10
    stds = (0.1, 0.1, 0.2, 0.2)
    expected = torch.tensor([[8 / 40 / 0.1, 0.0, math.log(48 / 40) / 0.2, math.log(10 / 20) / 0.2]], dtype=torch.float64)
    deltas = alwa_ext.encode_deltas(boxes, anchors, stds=stds)
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(alwa_ext.decode_deltas(deltas, anchors, stds=stds), boxes)
    # dw beyond |log(wh_ratio_clip)| is clamped: the width is at most 1000/16 times the anchor's.
    wide = alwa_ext.decode_deltas(torch.tensor([[0.0, 0.0, 50.0, -50.0]], dtype=torch.float64), anchors)
    torch.testing.assert_close(wide[0, 2] - wide[0, 0], torch.tensor(40 * 1000 / 16, dtype=torch.float64))
    torch.testing.assert_close(wide[0, 3] - wide[0, 1], torch.tensor(20 * 16 / 1000, dtype=torch.float64))
    clipped = alwa_ext.decode_deltas(torch.zeros(1, 4, dtype=torch.float64) + 3, anchors, max_shape=(35, 45))
    assert clipped[0, 2] <= 45 and clipped[0, 3] <= 35 and (clipped >= 0).all()


def test_nn_modules():
    pred, target = box_pairs(16, seed=71)
    torch.testing.assert_close(
        alwa_ext.nn.EIoULoss(focal_gamma=0.5, loss_weight=2.0)(pred, target),
        2.0 * alwa_ext.box_loss(pred, target, "eiou", focal_gamma=0.5),
    )
    torch.testing.assert_close(alwa_ext.nn.SIoULoss()(pred, target), alwa_ext.box_loss(pred, target, "siou"))
    torch.testing.assert_close(
        alwa_ext.nn.CIoULoss(alpha=3.0)(pred, target), alwa_ext.box_loss(pred, target, "ciou", alpha=3.0)
    )


# ------------------------------------------------------------------ argument errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "eiou", "alpha": 2.0}, "alpha"),
        ({"loss": "giou", "alpha": 0.0}, "alpha"),
        ({"loss": "giou", "alpha": float("nan")}, "alpha"),
        ({"loss": "giou", "focal_gamma": 1.0}, "focal_gamma"),
        ({"loss": "eiou", "focal_gamma": -1.0}, "focal_gamma"),
        ({"loss": "giou", "box_format": "deltas"}, "anchors"),
        ({"loss": "giou", "anchors": "same"}, "anchors"),
        ({"loss": "giou", "box_format": "deltas", "anchors": "short"}, "anchors"),
        ({"loss": "giou", "box_format": "deltas", "anchors": "same", "delta_stds": (1, 1, 0, 1)}, "delta_stds"),
        ({"loss": "giou", "box_format": "deltas", "anchors": "same", "delta_means": (0, 0, 0)}, "delta_means"),
        ({"loss": "giou", "box_format": "deltas", "anchors": "same", "wh_ratio_clip": 0.0}, "wh_ratio_clip"),
        ({"loss": "l1", "box_format": "deltas", "anchors": "same", "eps": 0.0}, "eps"),
        ({"loss": "wiou"}, "loss"),
    ],
)
def test_argument_errors(kwargs, match):
    pred, target = box_pairs(4, seed=81)
    kwargs = dict(kwargs)
    if kwargs.get("anchors") == "same":
        kwargs["anchors"] = pred.clone()
    elif kwargs.get("anchors") == "short":
        kwargs["anchors"] = pred[:2].clone()
    loss = kwargs.pop("loss")
    with pytest.raises(ValueError, match=match):
        alwa_ext.box_loss(pred, target, loss, **kwargs)


def test_op_level_errors():
    """Direct torch.ops calls are checked in C++ too."""
    pred, target = box_pairs(4, seed=82)
    with pytest.raises(ValueError, match="alpha"):
        torch.ops.alwa.box_loss_with_grad(*op_args(pred, target, "siou", alpha=2.0))
    with pytest.raises(ValueError, match="anchors"):
        torch.ops.alwa.box_loss_with_grad(*op_args(pred, target, "giou", box_format="deltas"))
    with pytest.raises(ValueError, match="box_format"):
        torch.ops.alwa.box_iou(pred, target, "iou", "deltas", 1e-7)
    with pytest.raises(ValueError, match="kind"):
        torch.ops.alwa.box_iou(pred, target, "siou", "xyxy", 1e-7)
