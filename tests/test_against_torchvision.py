"""alwa_ext against torchvision.ops, where torchvision is importable (the latest-torch CI
environment has it), on every device: the same values and gradients on ordinary boxes, and
finite numbers on the degenerate boxes where torchvision's are not."""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers.boxes import DEGENERATE_NAMES, degenerate_pairs, perturbed, random_boxes

ops = pytest.importorskip("torchvision.ops")

LOSSES = {
    "giou": ops.generalized_box_iou_loss,
    "diou": ops.distance_box_iou_loss,
    "ciou": ops.complete_box_iou_loss,
}
# torchvision's pairwise IoU has no eps in the union (ours: I / (U + eps)), so both sides are
# compared with eps = 0.
PAIRWISE = {
    "iou": ops.box_iou,
    "giou": ops.generalized_box_iou,
    "diou": lambda a, b: ops.distance_box_iou(a, b, eps=0.0),
    "ciou": lambda a, b: ops.complete_box_iou(a, b, eps=0.0),
}
# Degenerate pairs (by their name in helpers.boxes.DEGENERATE) where torchvision 0.29's loss or
# its gradient is NaN or inf; docs/api.md's table "Where torchvision is not finite" lists them.
TORCHVISION_NOT_FINITE = {
    "giou": set(),
    "diou": set(),
    # A box of zero height (atan(w / 0)), points, a nearly flat box.
    "ciou": {"zero height", "identical points", "two points", "nearly flat", "point and inverted box",
             "point outside a box", "point at a corner", "zero width against zero height", "identical flat"},
}
EXACT = dict(rtol=1e-12, atol=1e-12)


def ordinary_pairs(n=500, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    pred = random_boxes(n, generator=generator)
    return pred.to(device), perturbed(pred, generator=generator).to(device)


def loss_and_grads(fn, pred, target):
    pred = pred.clone().requires_grad_()
    target = target.clone().requires_grad_()
    loss = fn(pred, target)
    upstream = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype, device=loss.device).reshape(loss.shape)
    return (loss,) + torch.autograd.grad(loss, (pred, target), upstream)


def finite(tensors):
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("kind", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_losses_and_gradients_equal_torchvision(kind, reduction, device):
    pred, target = ordinary_pairs(device=device)
    ours = loss_and_grads(lambda p, t: alwa_ext.box_loss(p, t, kind, reduction=reduction), pred, target)
    theirs = loss_and_grads(lambda p, t: LOSSES[kind](p, t, reduction=reduction, eps=1e-7), pred, target)
    for name, a, b in zip(("loss", "grad_pred", "grad_target"), ours, theirs):
        torch.testing.assert_close(a, b, **EXACT, msg=lambda m: f"{kind} {name}: {m}")


@pytest.mark.parametrize("kind", sorted(PAIRWISE))
def test_pairwise_similarity_and_gradients_equal_torchvision(kind, device):
    boxes1, _ = ordinary_pairs(40, seed=1, device=device)
    boxes2, _ = ordinary_pairs(30, seed=2, device=device)
    ours = loss_and_grads(lambda a, b: alwa_ext.box_iou(a, b, kind, eps=0.0), boxes1, boxes2)
    theirs = loss_and_grads(PAIRWISE[kind], boxes1, boxes2)
    for name, a, b in zip(("value", "grad_boxes1", "grad_boxes2"), ours, theirs):
        torch.testing.assert_close(a, b, **EXACT, msg=lambda m: f"{kind} {name}: {m}")


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_degenerate_boxes_finite_where_torchvision_is_not(kind, device):
    pred, target = degenerate_pairs(torch.float64, device)
    not_finite = set()
    for i in range(len(pred)):
        ours = loss_and_grads(lambda p, t: alwa_ext.box_loss(p, t, kind, reduction="sum"), pred[i : i + 1], target[i : i + 1])
        assert finite(ours), f"{kind}: ours not finite on pair {i}: {pred[i].tolist()} vs {target[i].tolist()}"
        theirs = loss_and_grads(lambda p, t: LOSSES[kind](p, t, reduction="sum", eps=1e-7), pred[i : i + 1], target[i : i + 1])
        if not finite(theirs):
            not_finite.add(DEGENERATE_NAMES[i])
    assert not_finite == TORCHVISION_NOT_FINITE[kind]
