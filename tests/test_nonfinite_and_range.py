"""What the ops promise at the edges: NaN or inf in gives NaN (or inf) out, never a plausible
number; finite inputs give finite losses and gradients over the whole float32 range the README
states; float16 reductions are not clipped; a second-order gradient raises; a retained graph
gives the same gradients twice."""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers import reference
from alwa_ext.kinds import ALPHA_IOU_KINDS, COORDINATE_KINDS, IOU_KINDS, LOSS_KINDS

# (Centres apart in both axes: SIoU's angle cost has a kink, smoothed only by eps, where the
# centres align, so there the gradient is ill-conditioned in any precision.)
PRED = [[10.0, 10.0, 53.0, 60.0], [0.0, 0.0, 4.0, 3.0]]
TARGET = [[12.0, 8.0, 48.0, 66.0], [1.0, 1.5, 5.0, 2.5]]


def pair(dtype=torch.float32):
    return torch.tensor(PRED, dtype=dtype), torch.tensor(TARGET, dtype=dtype)


def loss_and_grads(pred, target, kind, **kwargs):
    pred = pred.clone().requires_grad_()
    target = target.clone().requires_grad_()
    loss = alwa_ext.box_loss(pred, target, kind, reduction="none", **kwargs)
    grads = torch.autograd.grad(loss.sum(), (pred, target))
    return (loss,) + grads


# --------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["pred", "target"])
@pytest.mark.parametrize("coordinate", range(4))
@pytest.mark.parametrize("kind", IOU_KINDS)
def test_iou_kinds_give_nan_for_a_nonfinite_coordinate(kind, coordinate, where, bad):
    pred, target = pair()
    (pred if where == "pred" else target)[0, coordinate] = bad
    loss, grad_pred, grad_target = loss_and_grads(pred, target, kind)
    assert torch.isnan(loss[0]), f"{kind}: {loss[0].item()} for a {bad} in {where}[{coordinate}]"
    assert torch.isnan(grad_pred[0]).all() and torch.isnan(grad_target[0]).all()
    # The other box is untouched.
    assert torch.isfinite(loss[1]) and torch.isfinite(grad_pred[1]).all()
    if kind in ALPHA_IOU_KINDS:
        value = alwa_ext.box_iou(pred[:1], target[:1], kind)
        assert torch.isnan(value).all()


@pytest.mark.parametrize("kind", COORDINATE_KINDS)
def test_coordinate_kinds_propagate_nan_and_inf(kind):
    pred, target = pair()
    pred[0, 1] = float("nan")
    pred[1, 2] = float("inf")
    loss, grad_pred, grad_target = loss_and_grads(pred, target, kind)
    assert torch.isnan(loss[0, 1]) and torch.isnan(grad_pred[0, 1]) and torch.isnan(grad_target[0, 1])
    assert loss[1, 2] == float("inf")
    # The other coordinates are untouched.
    assert torch.isfinite(loss[0, [0, 2, 3]]).all() and torch.isfinite(grad_pred[0, [0, 2, 3]]).all()


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_reduced_loss_with_one_nan_box_is_nan(kind, reduction):
    pred, target = pair()
    pred[1, 0] = float("nan")
    assert torch.isnan(alwa_ext.box_loss(pred, target, kind, reduction=reduction))
    assert torch.isnan(reference.box_loss(pred, target, kind, reduction=reduction))


@pytest.mark.parametrize("kind", ["giou", "l1"])
def test_nan_weight_and_avg_factor_give_nan(kind):
    pred, target = pair()
    weight = torch.tensor([1.0, float("nan")])
    assert torch.isnan(alwa_ext.box_loss(pred, target, kind, weight=weight))
    assert torch.isnan(alwa_ext.box_loss(pred, target, kind, avg_factor=torch.tensor(float("nan"))))


# --------------------------------------------------------------------------- range

# Pairs with the shape of PRED/TARGET at increasing scales, in float32 (and bfloat16, which has
# float32's exponent range). The README promises finite losses and gradients for every input
# whose coordinates lie within +-1.7e38 (their differences stay finite).
SCALES = [1e6, 1e18, 1e30, 1e37]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", IOU_KINDS)
def test_large_coordinates_give_the_float64_answer(kind, scale):
    pred64, target64 = (t * (scale / 100) for t in pair(torch.float64))
    pred, target = pred64.float(), target64.float()
    loss, grad_pred, grad_target = loss_and_grads(pred, target, kind)
    expected = reference.box_loss(pred.double(), target.double(), kind, reduction="none")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-5)
    # Gradients scale as 1 / scale: compare them at unit scale.
    p = pred.double().requires_grad_()
    t = target.double().requires_grad_()
    reference.box_loss(p, t, kind, reduction="none").sum().backward()
    unit = scale / 100
    torch.testing.assert_close(grad_pred.double() * unit, p.grad * unit, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(grad_target.double() * unit, t.grad * unit, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_finite_at_the_edge_of_the_stated_range(kind, dtype):
    edge = 1.7e38
    pred = torch.tensor([[-edge, -edge, edge, edge], [-edge, 0.0, 0.0, edge], [0.0, 0.0, 1.0, 1.0]])
    target = torch.tensor([[-edge, 0.0, edge, edge], [0.0, -edge, edge, 0.0], [edge / 2, edge / 2, edge, edge]])
    pred, target = pred.to(dtype), target.to(dtype)
    if kind in COORDINATE_KINDS:  # differences of +-edge: keep them within range
        target = target / 2
    loss, grad_pred, grad_target = loss_and_grads(pred, target, kind)
    assert torch.isfinite(loss).all() and torch.isfinite(grad_pred).all() and torch.isfinite(grad_target).all()
    if kind in IOU_KINDS:
        expected = reference.box_loss(pred.double(), target.double(), kind, reduction="none")
        torch.testing.assert_close(loss.double(), expected, rtol=2e-2, atol=1e-3)


# --------------------------------------------------------------------------- float16 reductions


def test_float16_sum_beyond_its_range_is_inf_not_clipped():
    n = 2**18
    pred = torch.zeros(n, 4, dtype=torch.float16)
    target = torch.full((n, 4), 3.0, dtype=torch.float16)
    total = alwa_ext.box_loss(pred, target, "l1", reduction="sum")
    assert total == float("inf")  # the true sum, 3.1e6, is beyond float16's 65504
    assert torch.sum(torch.abs(pred - target)) == float("inf")  # as torch's own sum
    mean = alwa_ext.box_loss(pred, target, "l1", reduction="mean")
    assert mean == 3.0


# --------------------------------------------------------------------------- higher order


@pytest.mark.parametrize("kind", ["giou", "ciou", "l1"])
def test_double_backward_raises(kind):
    pred, target = pair(torch.float64)
    pred.requires_grad_()
    loss = alwa_ext.box_loss(pred, target, kind)
    (grad,) = torch.autograd.grad(loss, pred, create_graph=True)
    # The first-order gradient is still right with create_graph=True ...
    (expected,) = torch.autograd.grad(reference.box_loss(pred, target, kind), pred)
    torch.testing.assert_close(grad, expected)
    # ... and a gradient of it is refused, not silently zero.
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(grad.square().sum(), pred)


def test_box_iou_double_backward_raises():
    boxes1, boxes2 = pair(torch.float64)
    boxes1.requires_grad_()
    (grad,) = torch.autograd.grad(alwa_ext.box_iou(boxes1, boxes2, "giou").sum(), boxes1, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(grad.sum(), boxes1)


@pytest.mark.parametrize("kind", ["iou", "ciou", "smooth_l1"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_retained_graph_gives_the_same_gradients_twice(kind, reduction):
    # IoU kinds scale the gradient of the forward pass in place at the first backward; the
    # second recomputes it.
    pred, target = pair(torch.float64)
    pred.requires_grad_()
    target.requires_grad_()
    loss = alwa_ext.box_loss(pred, target, kind, reduction=reduction)
    upstream = torch.rand_like(loss) + 0.5
    first = torch.autograd.grad(loss, (pred, target), upstream, retain_graph=True)
    second = torch.autograd.grad(loss, (pred, target), upstream)
    expected = torch.autograd.grad(reference.box_loss(pred, target, kind, reduction=reduction), (pred, target), upstream)
    for a, b, c in zip(first, second, expected):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
