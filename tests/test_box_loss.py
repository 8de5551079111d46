"""alwa_ext.box_loss against the eager reference: values, gradients, dtypes, edge cases, errors."""
from __future__ import annotations

import itertools

import pytest
import torch

import alwa_ext
from helpers.opcheck import opcheck_box_loss
from alwa_ext import reference
from conftest import (
    BOX_FORMATS,
    DTYPES,
    IOU_KINDS,
    LOSS_KINDS,
    REDUCTIONS,
    TOLERANCES,
    degenerate_pairs,
    perturbed,
    random_boxes,
    to_format,
)


def call_op(pred, target, loss="giou", reduction="mean", box_format="xyxy", *, weight=None, avg_factor=None,
            eps=1e-7, beta=1.0, grad_pred=False, grad_target=False):
    """torch.ops.alwa.box_loss_with_grad called directly, with the defaults of the public wrapper."""
    return torch.ops.alwa.box_loss_with_grad(
        pred, target, weight, avg_factor, None, loss, reduction, box_format, eps, beta, 1.0, 0.0,
        [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], 16 / 1000, grad_pred, grad_target,
    )


def make_inputs(n, *, dtype=torch.float64, box_format="xyxy", seed=0, leading=None):
    gen = torch.Generator().manual_seed(seed)
    pred = random_boxes(n, dtype=torch.float64, generator=gen, leading=leading)
    target = perturbed(pred, generator=gen)
    return to_format(pred, box_format).to(dtype), to_format(target, box_format).to(dtype)


def weight_for(mode, pred, seed=1):
    gen = torch.Generator().manual_seed(seed)
    if mode is None:
        return None
    shape = pred.shape if mode == "coord" else pred.shape[:-1]
    return (torch.rand(shape, dtype=torch.float64, generator=gen) + 0.1).to(pred.dtype)


def loss_and_grads(fn, pred, target, **kwargs):
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    out = fn(pred, target, **kwargs)
    # A non-uniform upstream gradient checks that backward scales per element.
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    grad_pred, grad_target = torch.autograd.grad(out, (pred, target), upstream)
    return out, grad_pred, grad_target


def assert_matches_reference(pred, target, tol=None, **kwargs):
    tol = tol or TOLERANCES[pred.dtype]
    fused = loss_and_grads(alwa_ext.box_loss, pred, target, **kwargs)
    eager = loss_and_grads(reference.box_loss, pred, target, **kwargs)
    for name, a, b in zip(("loss", "grad_pred", "grad_target"), fused, eager):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_mode", [None, "box", "coord"])
def test_float64_matches_reference(loss, box_format, reduction, weight_mode):
    pred, target = make_inputs(300, box_format=box_format)
    weight = weight_for(weight_mode, pred)
    assert_matches_reference(pred, target, loss=loss, reduction=reduction, weight=weight, box_format=box_format)


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("avg_factor", [7.5, "tensor", 0.0])
def test_avg_factor_matches_reference(loss, avg_factor):
    pred, target = make_inputs(50)
    if avg_factor == "tensor":
        avg_factor = torch.tensor(12.0, dtype=torch.float64)
    assert_matches_reference(pred, target, loss=loss, reduction="mean", avg_factor=avg_factor)


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES[1:])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reduced_precision_matches_reference(loss, dtype, reduction):
    pred, target = make_inputs(257, dtype=dtype, seed=3)
    weight = weight_for("box", pred)
    tol = TOLERANCES[dtype]
    if loss == "siou" and dtype == torch.float32:
        # SIoU's gradient is ill-conditioned in float32 (exp of a squared ratio times the angle
        # cost): fused and eager are each up to ~3e-4 from the float64 value on a few boxes.
        tol = dict(rtol=1e-3, atol=1e-5)
    assert_matches_reference(pred, target, tol=tol, loss=loss, reduction=reduction, weight=weight)


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_leading_dims_and_output_shapes(loss):
    pred, target = make_inputs(0, leading=(2, 3, 5))
    out = alwa_ext.box_loss(pred, target, loss, reduction="none")
    assert out.shape == ((2, 3, 5, 4) if loss in ("l1", "smooth_l1") else (2, 3, 5))
    assert_matches_reference(pred, target, loss=loss, reduction="none", weight=weight_for("coord", pred))


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_non_contiguous_inputs(loss):
    pred, target = make_inputs(64)
    # Column-major storage and a strided slice: neither is contiguous.
    pred_nc = pred.t().contiguous().t()
    target_nc = torch.cat([target, target], dim=0)[::2]
    weight_nc = torch.rand(64, 2, dtype=torch.float64)[:, 0]
    assert not pred_nc.is_contiguous() and not target_nc.is_contiguous() and not weight_nc.is_contiguous()
    assert_matches_reference(pred_nc, target_nc, loss=loss, weight=weight_nc)


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inputs(loss, dtype):
    pred = torch.zeros(0, 4, dtype=dtype, requires_grad=True)
    target = torch.zeros(0, 4, dtype=dtype)
    for reduction in ("mean", "sum"):
        out = alwa_ext.box_loss(pred, target, loss, reduction=reduction)
        assert out.shape == () and out.item() == 0.0
        (grad,) = torch.autograd.grad(out, pred)
        assert grad.shape == (0, 4)
    assert alwa_ext.box_loss(pred, target, loss, reduction="mean", avg_factor=torch.tensor(0.0)).item() == 0.0
    none = alwa_ext.box_loss(pred, target, loss, reduction="none")
    assert none.shape == ((0, 4) if loss in ("l1", "smooth_l1") else (0,))


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_degenerate_boxes_are_finite(loss, dtype):
    pred, target = degenerate_pairs(dtype)
    pred.requires_grad_()
    target.requires_grad_()
    out = alwa_ext.box_loss(pred, target, loss, reduction="none")
    grad_pred, grad_target = torch.autograd.grad(out.sum(), (pred, target))
    assert torch.isfinite(out).all(), out
    assert torch.isfinite(grad_pred).all() and torch.isfinite(grad_target).all()
    if loss in IOU_KINDS:
        # 1 - IoU plus non-negative penalties: within [0, 3] for every kind.
        assert ((out >= -1e-3) & (out <= 3.0)).all(), out
        # Identical boxes of ordinary size (rows 0 and 13) lose almost nothing.
        assert out[0].item() == pytest.approx(0.0, abs=1e-3)
        assert out[13].item() == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("loss", IOU_KINDS)
def test_degenerate_values_match_reference(loss):
    # Where the reference is finite it agrees with us (its gradients at ties and zero-size boxes
    # follow other subgradient choices, so only values are compared here).
    pred, target = degenerate_pairs(torch.float64)
    ours = alwa_ext.box_loss(pred, target, loss, reduction="none")
    theirs = reference.box_loss(pred, target, loss, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_float16_large_coordinates_do_not_overflow():
    pred = torch.tensor([[100.0, 200.0, 3100.0, 2200.0]], dtype=torch.float16)
    target = torch.tensor([[1600.0, 1200.0, 4600.0, 3700.0]], dtype=torch.float16)
    for loss in IOU_KINDS:
        ours = alwa_ext.box_loss(pred, target, loss)
        expected = reference.box_loss(pred.double(), target.double(), loss)
        assert torch.isfinite(ours)
        assert ours.double().item() == pytest.approx(expected.item(), rel=2e-3)


# CIoU treats alpha as a constant for the gradient (as torchvision and mmdet do), so finite
# differences cannot check it; its gradient is compared with the reference's autograd instead.
GRADCHECK_KINDS = tuple(k for k in LOSS_KINDS if k != "ciou")


@pytest.mark.parametrize("loss", GRADCHECK_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_gradcheck_float64(loss, box_format):
    for seed in range(3):
        pred, target = make_inputs(6, box_format=box_format, seed=seed)
        weight = weight_for("box", pred, seed=seed)
        pred.requires_grad_()
        target.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda p, t: alwa_ext.box_loss(p, t, loss, weight=weight, reduction="none", box_format=box_format),
            (pred, target),
        )


@pytest.mark.parametrize("loss", [k for k in IOU_KINDS if k != "ciou"])
def test_gradcheck_near_degenerate(loss):
    # Small, thin, barely overlapping and nested boxes, away from the kinks where finite
    # differences are meaningless.
    pred = torch.tensor(
        [[0.0, 0.0, 1e-3, 2e-3], [0.0, 0.0, 1.0, 0.01], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 4.0, 4.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    target = torch.tensor(
        [[5e-4, 1e-3, 1.7e-3, 2.9e-3], [0.5, 0.003, 1.7, 0.02], [0.999, 0.2, 2.0, 0.8], [1.0, 1.2, 2.0, 2.5]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambda p, t: alwa_ext.box_loss(p, t, loss, reduction="none"), (pred, target))


@pytest.mark.parametrize("loss", LOSS_KINDS)
@pytest.mark.parametrize("weight_mode", ["box", "coord"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradient_wrt_weight_and_avg_factor(loss, weight_mode, reduction):
    pred, target = make_inputs(8, seed=4)
    weight = weight_for(weight_mode, pred).requires_grad_()
    avg = torch.tensor(3.0, dtype=torch.float64, requires_grad=True) if reduction == "mean" else None
    args = (weight, avg) if avg is not None else (weight,)

    def fn(impl):
        def call(*a):
            return impl(pred, target, loss, weight=a[0], reduction=reduction, avg_factor=a[1] if len(a) > 1 else None)

        return call

    assert torch.autograd.gradcheck(fn(alwa_ext.box_loss), args)
    ours = torch.autograd.grad(fn(alwa_ext.box_loss)(*args).sum(), args)
    theirs = torch.autograd.grad(fn(reference.box_loss)(*args).sum(), args)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_deterministic_across_runs_and_thread_counts(loss):
    pred, target = make_inputs(50_000, dtype=torch.float32, seed=5)
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


def test_forward_only_computes_no_gradient():
    pred, target = make_inputs(10)
    _, grad_pred, grad_target = call_op(pred, target)
    assert grad_pred.numel() == 0 and grad_target.numel() == 0
    with torch.no_grad():
        out = alwa_ext.box_loss(pred.requires_grad_(), target)
    assert not out.requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss="focal"), "loss: expected one of"),
        (dict(reduction="avg"), "reduction: expected one of"),
        (dict(box_format="xywh"), "box_format: expected one of"),
        (dict(beta=0.0), "beta: expected"),
        (dict(beta=float("nan")), "beta: expected"),
        (dict(eps=-1e-7), "eps: expected"),
        (dict(reduction="sum", avg_factor=2.0), "avg_factor: cannot be used with reduction='sum'"),
        (dict(avg_factor=torch.ones(2)), "avg_factor: expected a 0-dim tensor"),
        (dict(weight=torch.ones(7)), r"weight: expected shape \(5,\)"),
        (dict(weight=torch.ones(5, dtype=torch.int64)), "weight: expected a floating-point tensor"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    pred, target = make_inputs(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=match):
        alwa_ext.box_loss(pred, target, **kwargs)


def test_bad_tensors_raise_value_error():
    pred, target = make_inputs(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"pred: expected boxes of shape \(\.\.\., 4\)"):
        alwa_ext.box_loss(pred[:, :3], target[:, :3])
    with pytest.raises(ValueError, match="target: expected the shape of pred"):
        alwa_ext.box_loss(pred, target[:4])
    with pytest.raises(ValueError, match="target: expected the dtype of pred"):
        alwa_ext.box_loss(pred, target.double())
    with pytest.raises(ValueError, match="pred: expected float32, float64, float16 or bfloat16"):
        alwa_ext.box_loss(pred.long(), target.long())
    with pytest.raises(ValueError, match="target: expected the device of pred"):
        alwa_ext.box_loss(pred, target.to("meta"))


def test_direct_op_calls_are_checked_in_cpp():
    # Bypassing the Python wrapper still gets a ValueError naming the argument.
    pred, target = make_inputs(5, dtype=torch.float32)
    with pytest.raises(ValueError, match="loss: expected one of"):
        call_op(pred, target, "focal")
    with pytest.raises(ValueError, match="target: expected the shape of pred"):
        call_op(pred, target[:2], "iou")
    with pytest.raises(ValueError, match="beta: expected"):
        call_op(pred, target, "l1", beta=-1.0)


def test_modules_follow_mmdet_calling_convention():
    pred, target = make_inputs(20)
    weight = weight_for("box", pred)
    for cls, kind in [
        (alwa_ext.nn.IoULoss, "iou"),
        (alwa_ext.nn.GIoULoss, "giou"),
        (alwa_ext.nn.DIoULoss, "diou"),
        (alwa_ext.nn.CIoULoss, "ciou"),
        (alwa_ext.nn.L1Loss, "l1"),
        (alwa_ext.nn.SmoothL1Loss, "smooth_l1"),
    ]:
        module = cls(loss_weight=2.0)
        expected = 2.0 * reference.box_loss(pred, target, kind, weight=weight, avg_factor=4.0)
        torch.testing.assert_close(module(pred, target, weight, avg_factor=4.0), expected)
        none = module(pred, target, reduction_override="none")
        torch.testing.assert_close(none, 2.0 * reference.box_loss(pred, target, kind, reduction="none"))
    generic = alwa_ext.nn.BoxLoss("smooth_l1", beta=0.5, reduction="sum")
    torch.testing.assert_close(generic(pred, target), reference.box_loss(pred, target, "smooth_l1", beta=0.5, reduction="sum"))
    with pytest.raises(ValueError, match="reduction"):
        alwa_ext.nn.GIoULoss(reduction="avg")


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_opcheck(loss):
    for (pred, target), weight, avg, reduction, fmt in itertools.islice(
        itertools.product(
            [make_inputs(9, seed=7), make_inputs(0, seed=7)],
            [None, "box"],
            [None, "tensor"],
            ["none", "mean"],
            ["xyxy", "cxcywh"],
        ),
        0,
        None,
        3,
    ):
        w = weight_for(weight, pred)
        a = torch.tensor(4.0, dtype=torch.float64) if avg and reduction == "mean" else None
        args = (pred.requires_grad_(), target, w, a, None, loss, reduction, fmt, 1e-7, 1.0, 1.0, 0.0,
                [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], 0.016, True, False)
        opcheck_box_loss(args)


def test_compile_fullgraph_dynamic_matches_eager():
    torch._dynamo.reset()

    def step(pred, target, weight, num_pos):
        total = pred.new_zeros(())
        for kind in LOSS_KINDS:
            total = total + alwa_ext.box_loss(pred, target, kind, weight=weight, avg_factor=num_pos)
        return total

    compiled = torch.compile(step, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (16, 33):
        pred, target = make_inputs(n, dtype=torch.float32, seed=n)
        weight = weight_for("box", pred)
        num_pos = torch.tensor(float(n) / 2)
        p1 = pred.clone().requires_grad_()
        p2 = pred.clone().requires_grad_()
        out_eager = step(p1, target, weight, num_pos)
        out_compiled = compiled(p2, target, weight, num_pos)
        torch.testing.assert_close(out_compiled, out_eager)
        (g1,) = torch.autograd.grad(out_eager, p1)
        (g2,) = torch.autograd.grad(out_compiled, p2)
        torch.testing.assert_close(g2, g1)


def test_compile_inductor_fullgraph():
    torch._dynamo.reset()
    pred, target = make_inputs(40, dtype=torch.float32, seed=11)

    def step(p, t):
        return alwa_ext.box_loss(p, t, "ciou") * 2 + alwa_ext.box_iou(p, t, "giou").mean()

    compiled = torch.compile(step, fullgraph=True)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    out1, out2 = step(p1, target), compiled(p2, target)
    torch.testing.assert_close(out2, out1)
    torch.testing.assert_close(torch.autograd.grad(out2, p2)[0], torch.autograd.grad(out1, p1)[0])
