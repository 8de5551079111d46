"""alwa_ext.distribution_focal_loss (torch.ops.alwa.distribution_focal_loss) and
alwa_ext.distribution_expectation (its Integral, the box decoding): the fused kernels
against the eager reference (helpers.reference.distribution_focal_loss) and mmdet's formula,
on every device, dtype, SIMD path and argument form; gradcheck, opcheck, torch.compile; rows
of weight 0 skipped; non-finite input; bad input. (Against ultralytics' DFLoss:
tests/integrations/test_integration_ultralytics.py.)
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alwa_ext
from helpers import reference
from helpers.boxes import TOLERANCES

REDUCTIONS_AND_AVG_FACTORS = [("none", None), ("sum", None), ("mean", None), ("mean", 37.0), ("mean", "tensor")]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def dfl_inputs(boxes=23, bins=16, *, seed=0, dtype=torch.float32, device="cpu", sides=4):
    """Logits (boxes, sides, bins) and distances in [0, bins - 1], both ends included."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(boxes, sides, bins, generator=g, dtype=torch.float64) * 3
    target = torch.rand(boxes, sides, generator=g, dtype=torch.float64) * (bins - 1)
    if boxes > 1:
        target[0, 0], target[1, -1] = bins - 1, 0.0
    return logits.to(dtype=dtype, device=device), target.to(dtype=dtype, device=device)


def dfl_weight(kind, target, seed=1):
    if kind is None:
        return None
    g = torch.Generator().manual_seed(seed)
    shape = target.shape if kind == "distance" else target.shape[:-1]
    w = torch.rand(shape, generator=g, dtype=torch.float64)
    w.view(-1)[:: 5] = 0  # skipped rows among the others
    return w.to(dtype=target.dtype, device=target.device)


def loss_and_grad(fn, logits, target, **kwargs):
    x = logits.detach().clone().requires_grad_()
    out = fn(x, target, **kwargs)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad


def cpu64(kwargs):
    return {k: (v.cpu().double() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}


def assert_matches_reference(logits, target, tol=None, **kwargs):
    fused = [t.cpu() for t in loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, **kwargs)]
    eager = loss_and_grad(reference.distribution_focal_loss, logits.cpu().double(), target.cpu().double(), **cpu64(kwargs))
    tol = tol or TOLERANCES[logits.dtype]
    for name, a, b in zip(("loss", "grad"), fused, eager):
        assert a.dtype == logits.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b.to(a.dtype), **tol, msg=lambda m: f"{name}: {m}")


def avg_factor_of(avg_factor, device):
    return torch.tensor(23.0, dtype=torch.float64, device=device) if avg_factor == "tensor" else avg_factor


# --------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("reduction, avg_factor", REDUCTIONS_AND_AVG_FACTORS)
@pytest.mark.parametrize("weight", [None, "distance", "box"])
def test_matches_reference(device, reduction, avg_factor, weight):
    logits, target = dfl_inputs(device=device, dtype=torch.float64)
    assert_matches_reference(logits, target, weight=dfl_weight(weight, target), reduction=reduction,
                             avg_factor=avg_factor_of(avg_factor, device))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bins", [1, 2, 16, 17, 40])
def test_every_dtype_and_bin_count(device, dtype, bins):
    logits, target = dfl_inputs(bins=bins, device=device, dtype=dtype, seed=bins)
    for reduction in ("none", "sum"):
        assert_matches_reference(logits, target, weight=dfl_weight("box", target), reduction=reduction)


# Bin counts below, at and above the SIMD widths (8, 16), row counts leaving every tail.
@pytest.mark.parametrize("bins", [1, 3, 8, 9, 16, 17, 33])
@pytest.mark.parametrize("boxes", [1, 7, 300])
def test_every_cpu_path(bins, boxes):
    logits, target = dfl_inputs(boxes=boxes, bins=bins, seed=bins + boxes)
    for isa in torch.ops.alwa.cpu_isas():
        previous = torch.ops.alwa.set_cpu_isa(isa)
        try:
            for weight in (None, "box"):
                assert_matches_reference(logits, target, weight=dfl_weight(weight, target), reduction="sum",
                                         tol=dict(rtol=2e-5, atol=1e-5))
        finally:
            torch.ops.alwa.set_cpu_isa(previous)


def test_gradcheck_float64(device):
    logits, target = dfl_inputs(boxes=3, bins=6, device=device, dtype=torch.float64)
    weight = dfl_weight("box", target).requires_grad_()
    avg = torch.tensor(5.0, dtype=torch.float64, device=device, requires_grad=True)
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w, a: alwa_ext.distribution_focal_loss(x, target, weight=w, avg_factor=a), (x, weight, avg))
    assert torch.autograd.gradcheck(
        lambda x: alwa_ext.distribution_focal_loss(x, target, reduction="none"), (x,))


def test_equals_mmdets_formula():
    """mmdet's distribution_focal_loss (gfocal_loss.py) transcribed: cross-entropy towards the
    two bins, weighted by the distance to the other; its module reduces with weight_reduce_loss."""
    logits, target = dfl_inputs(boxes=40, bins=17, sides=1, seed=5)
    pred, label = logits[:, 0].double(), (target[:, 0].double() * 0.999)  # mmdet cannot take label = n - 1
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.double() - label
    weight_right = label - dis_left.double()
    theirs = (F.cross_entropy(pred, dis_left, reduction="none") * weight_left
              + F.cross_entropy(pred, dis_right, reduction="none") * weight_right)
    ours = alwa_ext.distribution_focal_loss(pred, label, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # GFL's call: weight per distance, avg_factor 4.0, loss_weight 0.25.
    weight = torch.rand(40, dtype=torch.float64)
    module = alwa_ext.nn.DistributionFocalLoss(loss_weight=0.25)
    expected = 0.25 * (theirs * weight).sum() / (4.0 + torch.finfo(torch.float32).eps)
    torch.testing.assert_close(module(pred, label, weight=weight, avg_factor=4.0), expected)
    torch.testing.assert_close(module(pred, label, reduction_override="sum"), 0.25 * theirs.sum())


def test_rows_of_weight_zero_are_skipped(device):
    logits, target = dfl_inputs(boxes=6, device=device)
    weight = torch.ones(6, device=device)
    weight[2] = 0
    logits[2] = float("nan")  # never read
    target[2] = float("nan")
    loss, grad = loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, weight=weight, reduction="none")
    assert torch.isfinite(loss).all() and (loss[2] == 0).all()
    assert torch.isfinite(grad).all() and (grad[2] == 0).all()


def test_nan_in_gives_nan_out(device):
    logits, target = dfl_inputs(boxes=4, device=device)
    logits[1, 2, 5] = float("nan")
    target[3, 0] = float("nan")
    loss, grad = loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, reduction="none")
    assert loss[1, 2].isnan() and loss[3, 0].isnan()
    assert grad[1, 2].isnan().all() and grad[3, 0].isnan().all()
    mask = torch.ones_like(loss, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = False
    assert torch.isfinite(loss[mask]).all() and torch.isfinite(grad[mask]).all()
    assert alwa_ext.distribution_focal_loss(logits, target).isnan()


def test_large_finite_logits_give_finite_values(device):
    logits, target = dfl_inputs(boxes=4, device=device)
    logits = logits * 1e30
    loss, grad = loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, reduction="none")
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()


def test_empty_inputs(device):
    logits, target = dfl_inputs(boxes=0, device=device)
    for reduction in ("none", "sum", "mean"):
        loss, grad = loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, reduction=reduction)
        assert loss.shape == ((0, 4) if reduction == "none" else ())
        assert grad.shape == logits.shape
        if reduction != "none":
            assert loss.item() == 0


def test_non_contiguous_inputs(device):
    logits, target = dfl_inputs(boxes=10, device=device)
    wide = torch.cat([logits, logits], 0)[::2]
    t = target.t().contiguous().t()
    assert not wide.is_contiguous() and not t.is_contiguous()
    torch.testing.assert_close(alwa_ext.distribution_focal_loss(wide, t), alwa_ext.distribution_focal_loss(
        wide.contiguous(), t.contiguous()), rtol=0, atol=0)


def test_bit_identical_and_independent_of_threads():
    logits, target = dfl_inputs(boxes=5000, seed=3)
    weight = dfl_weight("box", target)
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(loss_and_grad(alwa_ext.distribution_focal_loss, logits, target, weight=weight))
    finally:
        torch.set_num_threads(previous)
    for loss, grad in runs[1:]:
        assert torch.equal(loss, runs[0][0]) and torch.equal(grad, runs[0][1])


# --------------------------------------------------------------------------- bad input


def test_argument_errors_name_the_argument(device):
    logits, target = dfl_inputs(boxes=3, device=device)
    dfl = alwa_ext.distribution_focal_loss
    with pytest.raises(ValueError, match="pred_dist: expected float32"):
        dfl(logits.long(), target)
    with pytest.raises(ValueError, match="pred_dist: expected shape"):
        dfl(logits[..., :0], target)
    with pytest.raises(ValueError, match=r"target: expected shape \(3, 4\)"):
        dfl(logits, target[:, :2])
    with pytest.raises(ValueError, match="target: expected floating-point"):
        dfl(logits, target.long())
    with pytest.raises(ValueError, match=r"weight: expected shape \(3, 4\) \(per distance\) or \(3,\) \(per box\)"):
        dfl(logits, target, weight=torch.ones(4, device=device))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        dfl(logits, target, reduction="avg")
    with pytest.raises(ValueError, match="avg_factor: cannot be used with reduction='sum'"):
        dfl(logits, target, reduction="sum", avg_factor=2.0)
    with pytest.raises(ValueError, match="target: distribution_focal_loss has no gradient"):
        dfl(logits.requires_grad_(), target.clone().requires_grad_())


@pytest.mark.parametrize("bad", [-0.5, 15.5, float("inf")])
def test_target_out_of_range_is_an_error_on_the_cpu(bad):
    logits, target = dfl_inputs(boxes=3)
    target[1, 2] = bad
    with pytest.raises(ValueError, match=r"target: expected distances in \[0, num_bins - 1\] = \[0, 15\], got .* at index 6"):
        alwa_ext.distribution_focal_loss(logits, target)
    weight = torch.ones(3)
    weight[1] = 0  # the row is skipped, so it is not read
    alwa_ext.distribution_focal_loss(logits, target, weight=weight)


def test_meta_tensors_on_other_devices_are_refused():
    logits, target = dfl_inputs(boxes=3)
    with pytest.raises(ValueError, match="target: expected the device of pred_dist"):
        alwa_ext.distribution_focal_loss(logits, target.to("meta"))
    with pytest.raises(ValueError, match="weight: expected the device of pred_dist"):
        alwa_ext.distribution_focal_loss(logits, target, weight=torch.ones(3, device="meta"))


# --------------------------------------------------------------------------- compile


@pytest.mark.registrations
def test_opcheck(device):
    logits, target = dfl_inputs(boxes=5, bins=7, device=device, dtype=torch.float64)
    weight = dfl_weight("box", target)
    op = torch.ops.alwa.distribution_focal_loss.default
    avg = torch.tensor(3.0, dtype=torch.float64, device=device)
    for args in ((logits.clone().requires_grad_(), target, None, None, "mean"),
                 (logits.clone().requires_grad_(), target, weight, avg, "mean"),
                 (logits, target, weight.clone().requires_grad_(), None, "none"),
                 (logits[:0], target[:0], None, None, "sum")):
        torch.library.opcheck(op, args)
    torch.library.opcheck(torch.ops.alwa.distribution_focal_loss_with_grad.default, (logits, target, weight, avg, "mean"))


@pytest.mark.registrations
def test_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()

    def step(x, t, w):
        return alwa_ext.distribution_focal_loss(x, t, weight=w, reduction="sum") * 2

    compiled = torch.compile(step, fullgraph=True, dynamic=True, backend="aot_eager")
    for boxes in (8, 13):
        logits, target = dfl_inputs(boxes=boxes, device=device, seed=boxes)
        w = dfl_weight("box", target)
        eager = loss_and_grad(step, logits, target, w=w)
        got = loss_and_grad(compiled, logits, target, w=w)
        for a, b in zip(got, eager):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------- the expectation (Integral)


def expectation_and_grad(fn, logits):
    x = logits.detach().clone().requires_grad_()
    out = fn(x)
    upstream = torch.linspace(-1.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bins", [1, 2, 16, 17, 33, 40])
def test_expectation_matches_reference(device, dtype, bins):
    logits, _ = dfl_inputs(boxes=21, bins=bins, device=device, dtype=dtype, seed=bins)
    got = [t.cpu() for t in expectation_and_grad(alwa_ext.distribution_expectation, logits)]
    want = expectation_and_grad(reference.distribution_expectation, logits.cpu().double())
    # p_i (i - E) loses the digits of E (up to bins - 1) where i is near it: an absolute error
    # of a few ulp of the bin count, not of the gradient.
    tol = dict(TOLERANCES[dtype], atol=TOLERANCES[dtype]["atol"] * bins)
    for name, a, b in zip(("expectation", "grad"), got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b.to(dtype), **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("bins", [3, 8, 16, 32, 33])
def test_expectation_on_every_cpu_path(bins):
    logits, _ = dfl_inputs(boxes=37, bins=bins, seed=bins)
    want = expectation_and_grad(reference.distribution_expectation, logits.double())
    for isa in torch.ops.alwa.cpu_isas():
        previous = torch.ops.alwa.set_cpu_isa(isa)
        try:
            got = expectation_and_grad(alwa_ext.distribution_expectation, logits)
        finally:
            torch.ops.alwa.set_cpu_isa(previous)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b.float(), rtol=2e-5, atol=1e-5)


def test_expectation_equals_ultralytics_decode_formula():
    logits, _ = dfl_inputs(boxes=9, seed=4)
    proj = torch.arange(16, dtype=torch.float32)
    torch.testing.assert_close(alwa_ext.distribution_expectation(logits), logits.softmax(-1).matmul(proj))


def test_expectation_gradcheck_nan_and_empty(device):
    logits, _ = dfl_inputs(boxes=3, bins=5, device=device, dtype=torch.float64)
    assert torch.autograd.gradcheck(alwa_ext.distribution_expectation, (logits.clone().requires_grad_(),))
    logits[1, 2, 3] = float("nan")
    out, grad = expectation_and_grad(alwa_ext.distribution_expectation, logits)
    assert out[1, 2].isnan() and grad[1, 2].isnan().all()
    assert torch.isfinite(out[0]).all() and torch.isfinite(grad[0]).all()
    empty, _ = dfl_inputs(boxes=0, device=device)
    out, grad = expectation_and_grad(alwa_ext.distribution_expectation, empty)
    assert out.shape == (0, 4) and grad.shape == empty.shape
    with pytest.raises(ValueError, match="pred_dist: expected float32"):
        alwa_ext.distribution_expectation(logits.long())
    with pytest.raises(ValueError, match="pred_dist: expected shape"):
        alwa_ext.distribution_expectation(logits[..., :0])


@pytest.mark.registrations
def test_expectation_opcheck_and_compile(device):
    logits, _ = dfl_inputs(boxes=5, bins=7, device=device, dtype=torch.float64)
    torch.library.opcheck(torch.ops.alwa.distribution_expectation.default, (logits.clone().requires_grad_(),))
    torch.library.opcheck(torch.ops.alwa.distribution_expectation_backward.default,
                          (torch.rand(5, 4, dtype=torch.float64, device=device), logits))
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: alwa_ext.distribution_expectation(x) * 2, fullgraph=True, dynamic=True,
                             backend="aot_eager")
    got = expectation_and_grad(compiled, logits)
    want = expectation_and_grad(lambda x: alwa_ext.distribution_expectation(x) * 2, logits)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
