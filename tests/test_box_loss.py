"""alwa_ext.box_loss against the eager reference (tests/helpers/reference.py, run on the CPU), on every
device: every kind (EIoU and Focal-EIoU, SIoU and the Alpha-IoU forms included), both box
formats, reductions, weights and avg_factor, dtypes and memory layouts, leading shapes, empty
and degenerate boxes, gradients (against autograd's and finite differences), and the nn modules.

Boxes in anchor-delta form are in test_deltas.py; argument errors in test_argument_checks.py;
opcheck and torch.compile in test_compile_and_opcheck.py.
"""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers import reference
from alwa_ext.kinds import ALPHA_IOU_KINDS, BOX_FORMATS, COORDINATE_KINDS, IOU_KINDS, LOSS_KINDS, REDUCTIONS
from helpers.boxes import (
    DTYPES,
    IDENTICAL_ORDINARY,
    TOLERANCES_VS_FLOAT64,
    box_pairs,
    box_weight,
    degenerate_pairs,
    degenerate_rows,
)
from helpers.compare import assert_close64, assert_matches_reference, fused_and_reference, tolerance
from helpers.raw_ops import box_loss_op
from helpers.variants import IOU_VARIANTS, OPTION_VARIANTS, VARIANTS, variant_id

# Largest value each IoU kind can take on any pair (the Alpha-IoU and focal forms stay below
# their kind's): 1 - IoU <= 1; GIoU's and DIoU's penalties and CIoU's aspect term are <= 1 each;
# EIoU adds three ratios <= 1 (centre distance over the enclosing diagonal, width and height
# differences over the enclosing sides); SIoU's distance and shape costs are below 2 each, halved.
LOSS_UPPER_BOUND = {"iou": 1.0, "giou": 2.0, "diou": 2.0, "ciou": 3.0, "eiou": 4.0, "siou": 3.0}
assert set(LOSS_UPPER_BOUND) == set(IOU_KINDS)


# ------------------------------------------------------------------ values and gradients


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_mode", [None, "box", "coord"])
def test_float64_matches_reference(loss, box_format, reduction, weight_mode, device):
    pred, target = box_pairs(300, box_format=box_format, device=device)
    weight = box_weight(weight_mode, pred)
    assert_matches_reference(pred, target, loss=loss, reduction=reduction, weight=weight, box_format=box_format)


@pytest.mark.parametrize("variant", OPTION_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_options_match_reference_float64(variant, box_format, reduction, device):
    kind, extra = variant
    pred, target = box_pairs(257, box_format=box_format, seed=1, device=device)
    weight = box_weight("box", pred, seed=2)
    fused, eager = fused_and_reference(pred, target, kind, box_format=box_format, reduction=reduction, weight=weight, **extra)
    for a, b in zip(fused, eager):
        assert_close64(a, b)


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("avg_factor", [7.5, "tensor", 0.0])
def test_avg_factor_matches_reference(loss, avg_factor, device):
    pred, target = box_pairs(50, device=device)
    if avg_factor == "tensor":
        avg_factor = torch.tensor(12.0, dtype=torch.float64, device=device)
    assert_matches_reference(pred, target, loss=loss, reduction="mean", avg_factor=avg_factor)


def strided(tensor):
    """The same values in storage that is not contiguous (every other row of a larger tensor)."""
    out = torch.stack([tensor, torch.zeros_like(tensor)], dim=1).flatten(0, 1)[::2]
    assert not out.is_contiguous() and torch.equal(out, tensor)
    return out


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_dtypes_and_layouts_match_reference(loss, dtype, reduction, layout, device):
    """One body over device x dtype x memory layout (torchvision's RoIOpTester style)."""
    pred, target = box_pairs(257, dtype=dtype, seed=3, device=device)
    weight = box_weight("box", pred)
    if layout == "strided":
        # Column-major storage for pred, strided rows for target and weight.
        pred, target, weight = pred.t().contiguous().t(), strided(target), strided(weight)
        assert not pred.is_contiguous()
    assert_matches_reference(pred, target, tol=tolerance(dtype, loss), loss=loss, reduction=reduction, weight=weight)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("dtype", DTYPES[1:], ids=str)
def test_reduced_precision_is_close_to_float64(variant, dtype, device):
    """float32 and the half types against the float64 reference: the error of the format."""
    kind, extra = variant
    pred, target = box_pairs(200, dtype=dtype, seed=51, device=device)
    p = pred.clone().requires_grad_(True)
    loss = alwa_ext.box_loss(p, target, kind, **extra)
    loss.backward()
    p64 = pred.cpu().double().requires_grad_(True)
    expected = reference.box_loss(p64, target.cpu().double(), kind, **extra)
    expected.backward()
    tol = TOLERANCES_VS_FLOAT64[dtype]
    grad_rtol = tol * 10
    if dtype == torch.float32 and extra.get("alpha", 1.0) < 1:
        # Alpha-GIoU meets a nearly nested pair in this draw ((C - U) / C = 2e-5), where x**alpha
        # magnifies float32's rounding (helpers.compare.tolerance says how).
        grad_rtol = tolerance(dtype, kind, extra)["rtol"]
    assert loss.dtype == dtype and p.grad.dtype == dtype
    torch.testing.assert_close(loss.cpu().double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(p.grad.cpu().double(), p64.grad, rtol=grad_rtol, atol=tol * 0.1)


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_leading_dims_and_output_shapes(loss, device):
    pred, target = box_pairs(0, leading=(2, 3, 5), device=device)
    out = alwa_ext.box_loss(pred, target, loss, reduction="none")
    assert out.shape == ((2, 3, 5, 4) if loss in COORDINATE_KINDS else (2, 3, 5))
    assert_matches_reference(pred, target, loss=loss, reduction="none", weight=box_weight("coord", pred))


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_inputs(loss, dtype, device):
    pred = torch.zeros(0, 4, dtype=dtype, device=device, requires_grad=True)
    target = torch.zeros(0, 4, dtype=dtype, device=device)
    for reduction in ("mean", "sum"):
        out = alwa_ext.box_loss(pred, target, loss, reduction=reduction)
        assert out.shape == () and out.item() == 0.0
        (grad,) = torch.autograd.grad(out, pred)
        assert grad.shape == (0, 4)
    avg_factor = torch.tensor(0.0, device=device)
    assert alwa_ext.box_loss(pred, target, loss, reduction="mean", avg_factor=avg_factor).item() == 0.0
    none = alwa_ext.box_loss(pred, target, loss, reduction="none")
    assert none.shape == ((0, 4) if loss in COORDINATE_KINDS else (0,))


def test_forward_only_computes_no_gradient(device):
    pred, target = box_pairs(10, device=device)
    _, grad_pred, grad_target = box_loss_op(pred, target)
    assert grad_pred.numel() == 0 and grad_target.numel() == 0
    with torch.no_grad():
        out = alwa_ext.box_loss(pred.requires_grad_(), target)
    assert not out.requires_grad


# ------------------------------------------------------------------ properties of the kinds


def test_alpha_one_is_the_plain_loss(device):
    pred, target = box_pairs(64, seed=12, device=device)
    for kind in ALPHA_IOU_KINDS:
        torch.testing.assert_close(
            alwa_ext.box_loss(pred, target, kind, alpha=1.0, reduction="none"),
            alwa_ext.box_loss(pred, target, kind, reduction="none"),
            rtol=0, atol=0,
        )


def test_focal_eiou_is_eiou_times_constant_iou_power(device):
    pred, target = box_pairs(64, seed=13, device=device)
    p = pred.clone().requires_grad_(True)
    focal = alwa_ext.box_loss(p, target, "eiou", focal_gamma=0.5, reduction="sum")
    (grad_focal,) = torch.autograd.grad(focal, p)
    p = pred.clone().requires_grad_(True)
    plain = alwa_ext.box_loss(p, target, "eiou", reduction="none")
    factor = alwa_ext.box_iou(pred, target).diagonal().pow(0.5)
    (grad_plain,) = torch.autograd.grad((plain * factor).sum(), p)
    assert_close64(focal, (plain * factor).sum())
    assert_close64(grad_focal, grad_plain)


@pytest.mark.parametrize("direction", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.3, -1.0)])
def test_siou_grows_as_boxes_move_apart(direction, device):
    f64 = dict(dtype=torch.float64, device=device)
    target = torch.tensor([[0.0, 0.0, 2.0, 3.0]], **f64)
    steps = torch.tensor([3.0, 10.0, 30.0, 100.0, 300.0], **f64)
    shift = steps[:, None] * torch.tensor(direction * 2, **f64)
    pred = torch.tensor([[0.0, 0.0, 1.0, 2.0]], **f64) + shift
    loss = alwa_ext.box_loss(pred, target.expand_as(pred), "siou", reduction="none")
    assert (loss > 1).all()
    assert (loss.diff() > 0).all(), loss


# ------------------------------------------------------------------ degenerate boxes

DEGENERATE_VARIANTS = VARIANTS + [("eiou", {"focal_gamma": 2.0}), ("ciou", {"alpha": 0.3})]
# Pairs where every reference formula is differentiable, so the values agree to float64 precision.
SMOOTH_DEGENERATE = ("identical", "touching edges", "far apart", "far apart, vertically aligned", "inverted corners",
                     "same centre, nested", "large coordinates")


@pytest.mark.parametrize("variant", DEGENERATE_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_degenerate_boxes_are_finite_and_in_range(variant, dtype, eps, device):
    kind, extra = variant
    pred, target = degenerate_pairs(dtype, device)  # float16 stores saturate: every row stays finite
    pred.requires_grad_()
    target.requires_grad_()
    out = alwa_ext.box_loss(pred, target, kind, reduction="none", eps=eps, **extra)
    grad_pred, grad_target = torch.autograd.grad(out.sum(), (pred, target))
    assert torch.isfinite(out).all(), out
    assert torch.isfinite(grad_pred).all() and torch.isfinite(grad_target).all()
    # Sums of non-negative terms, down to rounding (the float32 SIMD paths' fused multiply-adds
    # leave GIoU at -1e-9 on tiny identical boxes with eps = 0).
    assert (out >= -1e-6).all(), out
    if kind in IOU_KINDS:
        assert (out <= LOSS_UPPER_BOUND[kind] + 1e-3).all(), out
        # Identical boxes of ordinary size lose almost nothing.
        identical = out[degenerate_rows(IDENTICAL_ORDINARY)]
        torch.testing.assert_close(identical, torch.zeros_like(identical), rtol=0, atol=1e-3)


@pytest.mark.parametrize("variant", IOU_VARIANTS, ids=variant_id)
def test_degenerate_values_match_reference(variant, device):
    # Where the reference is finite it agrees with us (its gradients at ties and zero-size boxes
    # follow other subgradient choices, so only values are compared here).
    kind, extra = variant
    pred, target = degenerate_pairs(torch.float64, device)
    ours = alwa_ext.box_loss(pred, target, kind, reduction="none", **extra).cpu()
    theirs = reference.box_loss(pred.cpu(), target.cpu(), kind, reduction="none", **extra)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    smooth = degenerate_rows(SMOOTH_DEGENERATE)
    assert_close64(ours[smooth], theirs[smooth])


@pytest.mark.parametrize("variant", IOU_VARIANTS, ids=variant_id)
def test_float16_large_coordinates(variant, device):
    """Coordinates in the thousands: areas overflow float16, the float32 computation must not."""
    kind, extra = variant
    pred = torch.tensor([[100.0, 200.0, 3100.0, 2200.0]], dtype=torch.float16, device=device)
    target = torch.tensor([[1600.0, 1200.0, 4600.0, 3700.0]], dtype=torch.float16, device=device)
    ours = alwa_ext.box_loss(pred, target, kind, **extra)
    expected = reference.box_loss(pred.cpu().double(), target.cpu().double(), kind, **extra)
    assert torch.isfinite(ours)
    assert ours.double().item() == pytest.approx(expected.item(), rel=2e-3)

    pred, target = box_pairs(300, seed=41, device=device)
    pred16, target16 = (pred * 300 + 1000).half(), (target * 300 + 1000).half()
    p = pred16.clone().requires_grad_(True)
    loss = alwa_ext.box_loss(p, target16, kind, reduction="none", **extra)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(p.grad).all()
    expected = reference.box_loss(pred16.cpu().double(), target16.cpu().double(), kind, reduction="none", **extra)
    torch.testing.assert_close(loss.cpu().double(), expected, rtol=2e-3, atol=2e-3)


# ------------------------------------------------------------------ gradcheck

# CIoU treats its aspect weight as a constant for the gradient (as torchvision and mmdet do) and
# Focal-EIoU its IoU**gamma, so finite differences do not see the same function; their
# gradients are compared with the reference's autograd above instead.
GRADCHECK_KINDS = tuple(k for k in LOSS_KINDS if k != "ciou")


@pytest.mark.parametrize("loss", GRADCHECK_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_gradcheck_float64(loss, box_format, device):
    for seed in range(3):
        pred, target = box_pairs(6, box_format=box_format, seed=seed, device=device)
        weight = box_weight("box", pred, seed=seed)
        pred.requires_grad_()
        target.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda p, t: alwa_ext.box_loss(p, t, loss, weight=weight, reduction="none", box_format=box_format),
            (pred, target),
        )


@pytest.mark.parametrize("variant", [v for v in OPTION_VARIANTS if v[0] != "ciou" and "alpha" in v[1]], ids=variant_id)
def test_gradcheck_alpha_iou(variant, device):
    kind, extra = variant
    pred, target = box_pairs(6, seed=21, device=device)
    p = pred.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: alwa_ext.box_loss(a, b, kind, reduction="none", **extra), (p, t), eps=1e-6, atol=1e-5
    )


@pytest.mark.parametrize("loss", [k for k in IOU_KINDS if k in GRADCHECK_KINDS])
def test_gradcheck_near_degenerate(loss, device):
    # Small, thin, barely overlapping and nested boxes, away from the kinks where finite
    # differences are meaningless.
    f64 = dict(dtype=torch.float64, device=device, requires_grad=True)
    pred = torch.tensor(
        [[0.0, 0.0, 1e-3, 2e-3], [0.0, 0.0, 1.0, 0.01], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 4.0, 4.0]], **f64
    )
    target = torch.tensor(
        [[5e-4, 1e-3, 1.7e-3, 2.9e-3], [0.5, 0.003, 1.7, 0.02], [0.999, 0.2, 2.0, 0.8], [1.0, 1.2, 2.0, 2.5]], **f64
    )
    assert torch.autograd.gradcheck(lambda p, t: alwa_ext.box_loss(p, t, loss, reduction="none"), (pred, target))


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("weight_mode", ["box", "coord"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradient_wrt_weight_and_avg_factor(loss, weight_mode, reduction, device):
    pred, target = box_pairs(8, seed=4, device=device)
    weight = box_weight(weight_mode, pred).requires_grad_()
    avg = torch.tensor(3.0, dtype=torch.float64, device=device, requires_grad=True) if reduction == "mean" else None
    args = (weight, avg) if avg is not None else (weight,)

    def fn(impl, p, t):
        def call(*a):
            return impl(p, t, loss, weight=a[0], reduction=reduction, avg_factor=a[1] if len(a) > 1 else None)

        return call

    assert torch.autograd.gradcheck(fn(alwa_ext.box_loss, pred, target), args)
    ours = torch.autograd.grad(fn(alwa_ext.box_loss, pred, target)(*args).sum(), args)
    cpu_args = tuple(a.detach().cpu().requires_grad_() for a in args)
    theirs = torch.autograd.grad(fn(reference.box_loss, pred.cpu(), target.cpu())(*cpu_args).sum(), cpu_args)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_deterministic_across_runs_and_thread_counts(loss):
    # CPU threads; CUDA's run-to-run identity is in test_cuda_kernels.py.
    pred, target = box_pairs(50_000, dtype=torch.float32, seed=5)
    pred.requires_grad_()
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (threads, 1, threads):
            torch.set_num_threads(n_threads)
            out = alwa_ext.box_loss(pred, target, loss)
            (grad,) = torch.autograd.grad(out, pred)
            results.append((out, grad))
    finally:
        torch.set_num_threads(threads)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


# ------------------------------------------------------------------ nn modules

MODULES = [
    (alwa_ext.nn.IoULoss, "iou"),
    (alwa_ext.nn.GIoULoss, "giou"),
    (alwa_ext.nn.DIoULoss, "diou"),
    (alwa_ext.nn.CIoULoss, "ciou"),
    (alwa_ext.nn.EIoULoss, "eiou"),
    (alwa_ext.nn.SIoULoss, "siou"),
    (alwa_ext.nn.L1Loss, "l1"),
    (alwa_ext.nn.SmoothL1Loss, "smooth_l1"),
]
assert sorted(kind for _, kind in MODULES) == sorted(LOSS_KINDS)


def test_modules_follow_mmdet_calling_convention(device):
    pred, target = box_pairs(20, device=device)
    weight = box_weight("box", pred)
    for cls, kind in MODULES:
        module = cls(loss_weight=2.0)
        expected = 2.0 * reference.box_loss(pred, target, kind, weight=weight, avg_factor=4.0)
        torch.testing.assert_close(module(pred, target, weight, avg_factor=4.0), expected)
        none = module(pred, target, reduction_override="none")
        torch.testing.assert_close(none, 2.0 * reference.box_loss(pred, target, kind, reduction="none"))
    generic = alwa_ext.nn.BoxLoss("smooth_l1", beta=0.5, reduction="sum")
    torch.testing.assert_close(generic(pred, target), reference.box_loss(pred, target, "smooth_l1", beta=0.5, reduction="sum"))


def test_modules_pass_their_options(device):
    pred, target = box_pairs(16, seed=71, device=device)
    torch.testing.assert_close(
        alwa_ext.nn.EIoULoss(focal_gamma=0.5, loss_weight=2.0)(pred, target),
        2.0 * alwa_ext.box_loss(pred, target, "eiou", focal_gamma=0.5),
    )
    torch.testing.assert_close(alwa_ext.nn.SIoULoss()(pred, target), alwa_ext.box_loss(pred, target, "siou"))
    torch.testing.assert_close(
        alwa_ext.nn.CIoULoss(alpha=3.0)(pred, target), alwa_ext.box_loss(pred, target, "ciou", alpha=3.0)
    )
