"""What torch.compile needs of every torch.ops.alwa operator, on every device:
torch.library.opcheck (schema, fake kernel, autograd registration, dispatch) on sample inputs,
and torch.compile(fullgraph=True) of the public API matching eager, without a graph break.

(CUDA graphs and mode="reduce-overhead" are in test_cuda_kernels.py.)
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import alwa_ext
from alwa_ext import ALWA
from alwa_ext.kinds import ALPHA_IOU_KINDS, ALWA_STATISTICS, ALWA_WINDOW_SHAPE, BOX_FORMATS, LOSS_KINDS
from helpers.alwa import loss_sequences
from helpers.boxes import DELTA_STDS, box_pairs, box_weight, delta_pairs, random_boxes
from helpers.raw_ops import box_loss_args, opcheck_box_loss

# Every test here checks the registrations of torch.ops.alwa itself.
pytestmark = pytest.mark.registrations

LOSS_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


# ------------------------------------------------------------------ box_loss


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_box_loss_opcheck(loss, device):
    # Every third combination of boxes (9 and none), weight, avg_factor, reduction and format.
    combinations = itertools.product(
        [box_pairs(9, seed=7, device=device), box_pairs(0, seed=7, device=device)],
        [None, "box"],
        [None, "tensor"],
        ["none", "mean"],
        BOX_FORMATS,
    )
    for (pred, target), weight, avg, reduction, box_format in itertools.islice(combinations, 0, None, 3):
        a = torch.tensor(4.0, dtype=torch.float64, device=device) if avg and reduction == "mean" else None
        args = box_loss_args(pred.requires_grad_(), target, loss, weight=box_weight(weight, pred), avg_factor=a,
                             reduction=reduction, box_format=box_format)
        opcheck_box_loss(args)


def option_samples(device):
    """box_loss arguments on the options' code paths: Focal-EIoU, SIoU with both gradients,
    Alpha-CIoU in float32, deltas with IoU and coordinate kinds."""
    pred, target = box_pairs(16, seed=31, device=device)
    deltas, anchors, boxes = delta_pairs(16, seed=32, device=device)
    weight = torch.rand(16, dtype=torch.float64).to(device)
    grad = lambda t: t.clone().requires_grad_(True)  # noqa: E731
    yield box_loss_args(grad(pred), target, "eiou", focal_gamma=0.5, weight=weight)
    yield box_loss_args(grad(pred), grad(target), "siou", reduction="none")
    yield box_loss_args(pred.float(), target.float(), "ciou", alpha=3.0, reduction="sum")
    yield box_loss_args(grad(deltas), boxes, "giou", anchors=anchors, box_format="deltas", stds=DELTA_STDS)
    yield box_loss_args(grad(deltas), grad(boxes), "l1", anchors=anchors, box_format="deltas", reduction="none")


@pytest.mark.parametrize("sample", range(5), ids=["eiou-focal", "siou", "ciou-alpha", "giou-deltas", "l1-deltas"])
def test_box_loss_options_opcheck(sample, device):
    args = list(option_samples(device))[sample]
    opcheck_box_loss(args)


def test_box_loss_compile_fullgraph_dynamic_matches_eager(device):
    torch._dynamo.reset()

    def step(pred, target, weight, num_pos):
        total = pred.new_zeros(())
        for kind in LOSS_KINDS:
            total = total + alwa_ext.box_loss(pred, target, kind, weight=weight, avg_factor=num_pos)
        return total

    compiled = torch.compile(step, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (16, 33):
        pred, target = box_pairs(n, dtype=torch.float32, seed=n, device=device)
        weight = box_weight("box", pred)
        num_pos = torch.tensor(float(n) / 2, device=device)
        p1 = pred.clone().requires_grad_()
        p2 = pred.clone().requires_grad_()
        out_eager = step(p1, target, weight, num_pos)
        out_compiled = compiled(p2, target, weight, num_pos)
        torch.testing.assert_close(out_compiled, out_eager)
        (g1,) = torch.autograd.grad(out_eager, p1)
        (g2,) = torch.autograd.grad(out_compiled, p2)
        torch.testing.assert_close(g2, g1)


def test_box_loss_options_compile_fullgraph(device):
    deltas, anchors, target = delta_pairs(32, seed=61, dtype=torch.float32, device=device)

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


def test_box_loss_and_box_iou_compile_inductor_fullgraph(device):
    torch._dynamo.reset()
    pred, target = box_pairs(40, dtype=torch.float32, seed=11, device=device)

    def step(p, t):
        return alwa_ext.box_loss(p, t, "ciou") * 2 + alwa_ext.box_iou(p, t, "giou").mean()

    compiled = torch.compile(step, fullgraph=True)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    out1, out2 = step(p1, target), compiled(p2, target)
    torch.testing.assert_close(out2, out1)
    torch.testing.assert_close(torch.autograd.grad(out2, p2)[0], torch.autograd.grad(out1, p1)[0])


# ------------------------------------------------------------------ box_iou


@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_box_iou_opcheck(kind, device):
    gen = torch.Generator().manual_seed(5)
    for m, n in [(6, 7), (0, 3)]:
        b1 = random_boxes(m, generator=gen, device=device).requires_grad_()
        b2 = random_boxes(n, generator=gen, device=device).requires_grad_()
        torch.library.opcheck(torch.ops.alwa.box_iou.default, (b1, b2, kind, "xyxy", 1e-7))
        grad = torch.rand(m, n, dtype=torch.float64, generator=gen).to(device)
        torch.library.opcheck(torch.ops.alwa.box_iou_backward.default,
                              (grad, b1.detach(), b2.detach(), kind, "xyxy", 1e-7, True, True))


# ------------------------------------------------------------------ ALWA


def alwa_step_samples(device):
    """alwa_step arguments covering dtypes, the record-only interval 0, a window one value
    from full, and a non-finite loss."""
    def state(window_count=0.0, cls_weight=1.0):
        window = torch.tensor([[window_count, 2.0, 0.5, 0.7, 0.4], [window_count, 0.4, 0.01, 0.02, 0.01]], dtype=torch.float64,
                              device=device)
        if window_count == 0:
            window.zero_()
        scalar = lambda v: torch.tensor(v, dtype=torch.int64, device=device)  # noqa: E731
        return [torch.tensor([cls_weight, 1.0], dtype=torch.float64, device=device), window, scalar(int(window_count)), scalar(0), scalar(0), scalar(0)]

    for dtype in LOSS_DTYPES:
        lc = torch.tensor(2.5, dtype=dtype, device=device)
        lr = torch.tensor(0.3, dtype=dtype, device=device)
        yield (lc, lr, *state(), 100, "alwa2", "paper", "raw")
        yield (lc, lr, *state(2.0, 0.7), 3, "alwa1", "paper", "raw")  # closes the window
        yield (lc, lr, *state(2.0, 0.7), 3, "alwa1", "paper", "detrended")  # closes it about its trend
        yield (lc, lr, *state(2.0), 3, "alwa2", "stable", "raw")
        yield (lc, lr, *state(5.0), 0, "alwa2", "paper", "raw")  # record only
    nan = torch.tensor(float("nan"), device=device)
    yield (nan, torch.tensor(1.0, device=device), *state(2.0), 3, "alwa2", "paper", "raw")


def test_alwa_step_opcheck(device):
    for args in alwa_step_samples(device):
        torch.library.opcheck(torch.ops.alwa.alwa_step.default, args)


def test_alwa_pooled_update_opcheck(device):
    f64 = dict(dtype=torch.float64, device=device)
    rank_windows = torch.tensor([[[3, 2.0, 1.0, 2.0, 1.5], [3, 0.5, 0.02, 0.03, 0.01]],
                                 [[2, 3.0, 0.5, 0.5, 0.5], [2, 0.4, 0.01, 0.01, 0.01]]], **f64)
    for statistic in ALWA_STATISTICS:
        args = (rank_windows, torch.tensor([1.0, 1.0], **f64), torch.ones(ALWA_WINDOW_SHAPE, **f64),
                torch.tensor(4, device=device), torch.tensor(0, device=device), "alwa1", statistic)
        torch.library.opcheck(torch.ops.alwa.alwa_pooled_update.default, args)


def test_alwa_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counts of earlier tests' graphs
    cls, reg = loss_sequences("decaying", 40, seed=4)

    def training_step(alwa, pred_cls, pred_reg):
        loss_cls = (pred_cls**2).sum()
        loss_reg = (pred_reg - 1).abs().sum()
        weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)
        return weighted_cls + weighted_reg

    compiled_step = torch.compile(training_step, fullgraph=True, backend="aot_eager")
    eager, compiled = ALWA(mode="alwa1", interval=5).to(device), ALWA(mode="alwa1", interval=5).to(device)
    for c, r in zip(cls, reg):
        grads = []
        for alwa, step in ((eager, training_step), (compiled, compiled_step)):
            pred_cls = torch.tensor([math.sqrt(c)], device=device, requires_grad=True)
            pred_reg = torch.tensor([1 + r], device=device, requires_grad=True)
            total = step(alwa, pred_cls, pred_reg)
            total.backward()
            grads.append((total.item(), pred_cls.grad.item(), pred_reg.grad.item()))
        assert grads[0] == pytest.approx(grads[1], rel=1e-12)
        assert torch.equal(eager.weights, compiled.weights)
        assert torch.equal(eager.window, compiled.window)
    assert compiled.num_updates.item() == 8
    # One graph for the whole run: nothing recompiles as the statistics change.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_alwa_compile_inductor_fullgraph(device):
    torch._dynamo.reset()
    alwa = ALWA(interval=3).to(device)
    compiled = torch.compile(lambda a, b: alwa(a, b), fullgraph=True)
    expected_alwa = ALWA(interval=3).to(device)
    f64 = dict(dtype=torch.float64, device=device)
    for c, r in [(2.0, 0.5), (3.0, 0.4), (5.0, 0.9), (1.0, 0.1), (2.0, 0.2), (4.0, 0.3), (0.5, 0.5)]:
        out = compiled(torch.tensor(c, **f64), torch.tensor(r, **f64))
        expected = expected_alwa(torch.tensor(c, **f64), torch.tensor(r, **f64))
        assert out[0].item() == pytest.approx(expected[0].item(), rel=1e-15)
        assert torch.equal(alwa.weights, expected_alwa.weights)
        assert torch.equal(alwa.window, expected_alwa.window)
