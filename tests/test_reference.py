"""The eager references themselves (alwa_ext.reference), against outside implementations and
hand-computed values, for what no fused op checks them against yet:

- ``sigmoid_focal_loss``: against torchvision.ops.sigmoid_focal_loss (float targets) where
  torchvision is importable, and against a transcription of mmdet's ``py_sigmoid_focal_loss``
  with ``weight_reduce_loss`` (class indices with a background class); finite and accurate for
  large |logits|.
- ``PublishedStyleALWA`` / ``alwa_published``: a window by hand, and the host-side module the
  benchmarks time against the fused ``alwa_ext.ALWA``.

(box_loss and box_iou are checked against torchvision in test_against_torchvision.py; the fused
ops against these references everywhere else.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alwa_ext import ALWA
from helpers import reference
from alwa_ext.kinds import ALWA_MODES, ALWA_UPDATES, AVG_FACTOR_EPS, REDUCTIONS
from helpers.alwa import feed, loss_sequences

NUM_CLASSES = 7


def focal_inputs(seed=0, shape=(2, 50), dtype=torch.float64, device="cpu"):
    """Logits (*shape, C) and class indices in [0, C] (C: background), a quarter of them objects."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, NUM_CLASSES, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, NUM_CLASSES, shape, generator=g)
    labels[torch.rand(shape, generator=g) < 0.75] = NUM_CLASSES
    return logits.to(dtype=dtype, device=device), labels.to(device)


def mmdet_sigmoid_focal_loss(pred, labels, weight=None, gamma=2.0, alpha=0.25, reduction="mean", avg_factor=None):
    """mmdet's FocalLoss(use_sigmoid=True) on the PyTorch path, transcribed: class indices to
    one-hot without the background column, py_sigmoid_focal_loss, weight_reduce_loss."""
    num_classes = pred.size(-1)
    target = F.one_hot(labels, num_classes=num_classes + 1)[..., :num_classes].type_as(pred)
    pred_sigmoid = pred.sigmoid()
    pt = (1 - pred_sigmoid) * target + pred_sigmoid * (1 - target)  # mmdet's pt is 1 - p_t
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    if weight is not None:
        loss = loss * (weight if weight.shape == loss.shape else weight.unsqueeze(-1))
    if avg_factor is None:
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    return loss


def value_and_grad(fn, logits, *args, **kwargs):
    x = logits.detach().clone().requires_grad_()
    out = fn(x, *args, **kwargs)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad


EXACT = dict(rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- sigmoid focal loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("targets", ["hard", "soft"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.6, 1.5), (-1.0, 2.0), (0.25, 0.0)])
def test_sigmoid_focal_loss_equals_torchvision(reduction, targets, alpha, gamma):
    ops = pytest.importorskip("torchvision.ops")
    logits, labels = focal_inputs(seed=1)
    target = F.one_hot(labels, NUM_CLASSES + 1)[..., :NUM_CLASSES].double()
    if targets == "soft":
        target = target * 0.8 + torch.rand(target.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.2
    ours = value_and_grad(reference.sigmoid_focal_loss, logits, target, alpha=alpha, gamma=gamma, reduction=reduction)
    theirs = value_and_grad(ops.sigmoid_focal_loss, logits, target, alpha=alpha, gamma=gamma, reduction=reduction)
    for name, a, b in zip(("loss", "grad"), ours, theirs):
        torch.testing.assert_close(a, b, **EXACT, msg=lambda m: f"{name}: {m}")


# avg_factor with "sum" is an error in mmdet (test_sigmoid_focal_loss_argument_errors).
REDUCTIONS_AND_AVG_FACTORS = [(r, a) for r in REDUCTIONS for a in (None, 13.0, "tensor") if a is None or r != "sum"]


@pytest.mark.parametrize("reduction, avg_factor", REDUCTIONS_AND_AVG_FACTORS)
@pytest.mark.parametrize("weight_per", [None, "anchor", "element"])
def test_sigmoid_focal_loss_equals_mmdet_formula(reduction, avg_factor, weight_per):
    logits, labels = focal_inputs(seed=3)
    g = torch.Generator().manual_seed(4)
    weight = None
    if weight_per is not None:
        weight = torch.rand(logits.shape if weight_per == "element" else labels.shape, dtype=torch.float64, generator=g)
    if avg_factor == "tensor":
        avg_factor = (labels < NUM_CLASSES).sum().double()
    kwargs = dict(weight=weight, reduction=reduction, avg_factor=avg_factor)
    ours = value_and_grad(reference.sigmoid_focal_loss, logits, labels, **kwargs)
    theirs = value_and_grad(mmdet_sigmoid_focal_loss, logits, labels, **kwargs)
    for name, a, b in zip(("loss", "grad"), ours, theirs):
        torch.testing.assert_close(a, b, **EXACT, msg=lambda m: f"{name}: {m}")


def test_class_indices_equal_their_one_hot_targets():
    logits, labels = focal_inputs(seed=5)
    one_hot = F.one_hot(labels, NUM_CLASSES + 1)[..., :NUM_CLASSES].double()
    assert (one_hot[labels == NUM_CLASSES] == 0).all()  # the background is negative for every class
    by_index = reference.sigmoid_focal_loss(logits, labels, reduction="none")
    by_one_hot = reference.sigmoid_focal_loss(logits, one_hot, reduction="none")
    assert torch.equal(by_index, by_one_hot)
    assert by_index.shape == logits.shape


def test_large_logits_are_finite_and_keep_their_relative_precision():
    # Confident right and wrong answers: every target with logits from -1e4 to 1e4.
    x = torch.cat([torch.linspace(-20, 20, 401, dtype=torch.float64), torch.tensor([-1e4, -100.0, 100.0, 1e4], dtype=torch.float64)])
    logits = x.repeat(2)[:, None]
    targets = torch.cat([torch.ones_like(x), torch.zeros_like(x)])[:, None]
    exact = reference.sigmoid_focal_loss(logits, targets, reduction="none")
    assert torch.isfinite(exact).all() and (exact >= 0).all()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        loss, grad = value_and_grad(reference.sigmoid_focal_loss, logits.to(dtype), targets.to(dtype), reduction="sum")
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), dtype
    # float32 keeps the relative precision of tiny losses (a confident right answer at |x| = 20:
    # (1 - p_t)^2 = e^-40), where 1 - p_t formed as 1 - sigmoid(x) would round to 0.
    moderate = x.abs().repeat(2) <= 20
    single = reference.sigmoid_focal_loss(logits.float(), targets.float(), reduction="none").double()
    torch.testing.assert_close(single[moderate], exact[moderate], rtol=1e-5, atol=0)
    # The test has teeth: torchvision's and mmdet's product form in float32 rounds some of them to 0.
    p = torch.sigmoid(logits.float())
    t = targets.float()
    product_form = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none") * (1 - (p * t + (1 - p) * (1 - t))) ** 2
    assert (product_form[moderate] == 0).any() and (exact[moderate] > 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_sigmoid_focal_loss_computes_half_types_in_float32(dtype):
    logits, labels = focal_inputs(seed=6, dtype=dtype)
    half = reference.sigmoid_focal_loss(logits, labels, reduction="none")
    assert half.dtype == dtype
    assert torch.equal(half, reference.sigmoid_focal_loss(logits.float(), labels, reduction="none").to(dtype))


def test_sigmoid_focal_loss_mean_divides_by_avg_factor_plus_eps():
    logits, labels = focal_inputs(seed=7)
    total = reference.sigmoid_focal_loss(logits, labels, reduction="sum")
    mean = reference.sigmoid_focal_loss(logits, labels, reduction="mean", avg_factor=4.0)
    torch.testing.assert_close(mean, total / (4.0 + AVG_FACTOR_EPS), rtol=1e-15, atol=0)
    torch.testing.assert_close(reference.sigmoid_focal_loss(logits, labels), total / logits.numel(), rtol=1e-15, atol=0)


def test_sigmoid_focal_loss_argument_errors():
    logits, labels = focal_inputs(seed=8)
    with pytest.raises(ValueError, match="avg_factor"):
        reference.sigmoid_focal_loss(logits, labels, reduction="sum", avg_factor=2.0)
    with pytest.raises(ValueError, match="reduction"):
        reference.sigmoid_focal_loss(logits, labels, reduction="avg")
    with pytest.raises(ValueError, match="targets"):
        reference.sigmoid_focal_loss(logits, labels[:, :3])
    with pytest.raises(ValueError, match="targets"):
        reference.sigmoid_focal_loss(logits, torch.zeros(2, 50, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight"):
        reference.sigmoid_focal_loss(logits, labels, weight=torch.ones(50))


# --------------------------------------------------------------------------- ALWA as published


def test_alwa_published_by_hand():
    # interval 2, std of [a, b] is |a - b| / sqrt(2): weighted cls window [0.5, 4.5] -> 4/sqrt2,
    # reg [3, 6] -> 3/sqrt2, so λcls = 1 - (4 - 3) / 4 = 3/4; λreg stays 3.
    applied, after = reference.alwa_published([1.0, 9.0, 2.0], [1.0, 2.0, 1.0], mode="alwa2", interval=2,
                                              cls_weight=0.5, reg_weight=3.0)
    np.testing.assert_allclose(applied, [[0.5, 3.0], [0.5, 3.0], [0.75, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(after, [[0.5, 3.0], [0.75, 3.0], [0.75, 3.0]], rtol=1e-15)
    # ALWA_1 adds the means: cls [1, 9] -> 5 + 8/sqrt2, reg [3, 6] -> 4.5 + 3/sqrt2, so λcls = reg/cls.
    _, after = reference.alwa_published([1.0, 9.0], [1.0, 2.0], mode="alwa1", interval=2, cls_weight=1.0, reg_weight=3.0)
    cls, reg = 5 + 8 / np.sqrt(2), 4.5 + 3 / np.sqrt(2)
    assert after[-1, 0] == pytest.approx(reg / cls, rel=1e-14)
    # No update where cls <= reg: with λcls = 0.5 the cls statistic 2.5 + 4/sqrt2 is below reg's.
    _, after = reference.alwa_published([1.0, 9.0], [1.0, 2.0], mode="alwa1", interval=2, cls_weight=0.5, reg_weight=3.0)
    assert after[-1, 0] == 0.5


@pytest.mark.parametrize("mode", ALWA_MODES)
@pytest.mark.parametrize("update", ALWA_UPDATES)
def test_published_style_module_weights_like_the_fused_module(mode, update):
    """The host-side module benchmarks.bench_alwa times (.item() every call) returns what
    alwa_ext.ALWA returns, call by call."""
    cls, reg = loss_sequences("decaying", 300, seed=1)
    _, fused_after, fused_returned = feed(ALWA(mode=mode, interval=7, update=update), cls, reg)
    host = reference.PublishedStyleALWA(mode=mode, interval=7, update=update)
    host_returned, host_after = [], []
    for c, r in zip(cls, reg):
        weighted = host(torch.tensor(c, dtype=torch.float64), torch.tensor(r, dtype=torch.float64))
        host_returned.append([w.item() for w in weighted])
        host_after.append([host.cls_weight, host.reg_weight])
    assert len(np.unique(fused_after[:, 0])) > 2, "the rule must fire"
    np.testing.assert_allclose(host_after, fused_after, rtol=1e-9, atol=0)
    np.testing.assert_allclose(host_returned, fused_returned, rtol=1e-9, atol=0)
