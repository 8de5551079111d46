"""alwa_ext.sigmoid_focal_loss (torch.ops.alwa.sigmoid_focal_loss): the fused kernels against
the eager float64 reference (alwa_ext.reference.sigmoid_focal_loss, itself checked against
torchvision and mmdet's formula in test_reference.py), on every device, dtype, SIMD path and
argument form; gradcheck, opcheck, torch.compile; extreme and non-finite logits; bad input.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alwa_ext
from helpers import reference
from alwa_ext.kinds import AVG_FACTOR_EPS, REDUCTIONS
from helpers.boxes import TOLERANCES

# Reduction and avg_factor pairs (avg_factor with "sum" is an error).
REDUCTIONS_AND_AVG_FACTORS = [(r, a) for r in REDUCTIONS for a in (None, 37.0, "tensor") if a is None or r != "sum"]
# (alpha, gamma): the defaults (gamma = 2 has its own path), another power (the general path),
# alpha off (torchvision's -1), no focusing, a power below 1.
ALPHA_GAMMA = [(0.25, 2.0), (0.6, 1.5), (-1.0, 2.0), (0.25, 0.0), (0.4, 0.5)]


def focal_inputs(rows=(3, 41), classes=20, *, soft=False, seed=0, dtype=torch.float32, device="cpu", scale=3.0):
    """Logits (*rows, classes) and targets: class indices in [0, classes] (a quarter of the rows
    objects, the rest background) or, with ``soft``, float targets in [0, 1] of the logits' shape."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*rows, classes, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, max(classes, 1), rows, generator=g)
    labels[torch.rand(rows, generator=g) < 0.75] = classes
    if soft:
        one_hot = F.one_hot(labels, classes + 1)[..., :classes].double()
        targets = (one_hot * 0.7 + torch.rand(one_hot.shape, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    else:
        targets = labels
    return logits.to(dtype=dtype, device=device), targets.to(device)


def loss_and_grad(fn, logits, targets, **kwargs):
    """(loss, d loss / d logits) with a non-uniform upstream gradient."""
    x = logits.detach().clone().requires_grad_()
    out = fn(x, targets, **kwargs)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad


def expected(logits, targets, **kwargs):
    """The float64 reference on the CPU, cast to the logits' dtype."""
    cpu = {k: (v.cpu().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in kwargs.items()}
    t = targets.cpu().double() if targets.is_floating_point() else targets.cpu()
    loss, grad = loss_and_grad(reference.sigmoid_focal_loss, logits.cpu().double(), t, **cpu)
    return loss.to(logits.dtype), grad.to(logits.dtype)


def assert_matches_reference(logits, targets, tol=None, **kwargs):
    fused = [t.cpu() for t in loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, targets, **kwargs)]
    eager = expected(logits, targets, **kwargs)
    tol = tol or TOLERANCES[logits.dtype]
    for name, a, b in zip(("loss", "grad"), fused, eager):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")


def make_kwargs(logits, targets, reduction, avg_factor, weight_per, alpha=0.25, gamma=2.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    kwargs = dict(reduction=reduction, alpha=alpha, gamma=gamma)
    if weight_per is not None:
        shape = logits.shape if weight_per == "element" else logits.shape[:-1]
        kwargs["weight"] = torch.rand(shape, generator=g, dtype=torch.float64).to(logits.dtype).to(logits.device)
    if avg_factor == "tensor":
        avg_factor = torch.tensor(23.0, dtype=torch.float64, device=logits.device)
    kwargs["avg_factor"] = avg_factor
    return kwargs


# --------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("reduction, avg_factor", REDUCTIONS_AND_AVG_FACTORS)
@pytest.mark.parametrize("weight_per", [None, "anchor", "element"])
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
def test_matches_reference(device, reduction, avg_factor, weight_per, soft):
    logits, targets = focal_inputs(soft=soft, device=device, dtype=torch.float64)
    assert_matches_reference(logits, targets, **make_kwargs(logits, targets, reduction, avg_factor, weight_per))


@pytest.mark.parametrize("alpha, gamma", ALPHA_GAMMA)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_every_dtype_alpha_and_gamma(device, alpha, gamma, soft, dtype):
    logits, targets = focal_inputs(soft=soft, device=device, dtype=dtype, seed=2)
    tol = TOLERANCES[dtype]
    if dtype == torch.float32 and not gamma.is_integer():
        # m**gamma as exp(gamma log m) on the SIMD path: a few float32 ulp of gamma |log m|.
        tol = dict(rtol=1e-4, atol=tol["atol"])
    assert_matches_reference(logits, targets, tol=tol, reduction="none", alpha=alpha, gamma=gamma)
    assert_matches_reference(logits, targets, tol=tol, reduction="sum", alpha=alpha, gamma=gamma)


# Class counts below, at and above the SIMD widths (8, 16), with rows straddling a vector, and
# row counts leaving every tail length.
@pytest.mark.parametrize("classes", [1, 3, 8, 16, 20, 37, 80])
@pytest.mark.parametrize("rows", [1, 5, 203])
def test_shapes_on_every_cpu_path(classes, rows):
    for soft in (False, True):
        logits, targets = focal_inputs(rows=(rows,), classes=classes, soft=soft, seed=classes + rows)
        for isa in torch.ops.alwa.cpu_isas():
            previous = torch.ops.alwa.set_cpu_isa(isa)
            try:
                for gamma in (2.0, 1.5):
                    kwargs = dict(gamma=gamma, weight=torch.rand(rows), reduction="sum")
                    assert_matches_reference(logits, targets, tol=dict(rtol=1e-4, atol=1e-5), **kwargs)
            finally:
                torch.ops.alwa.set_cpu_isa(previous)


def test_vector_paths_agree_with_the_scalar_loop():
    # Not bit-identical (the vector exp/log are not libm's) but within float32 rounding of it.
    logits, targets = focal_inputs(rows=(2, 3001), classes=20, seed=7)
    results = {}
    for isa in torch.ops.alwa.cpu_isas():
        previous = torch.ops.alwa.set_cpu_isa(isa)
        try:
            results[isa] = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, targets, reduction="none")
        finally:
            torch.ops.alwa.set_cpu_isa(previous)
    if len(results) == 1:
        pytest.skip("this CPU has only the scalar path")
    for isa, (loss, grad) in results.items():
        torch.testing.assert_close(loss, results["scalar"][0], rtol=2e-6, atol=1e-7, msg=lambda m: f"{isa} loss: {m}")
        torch.testing.assert_close(grad, results["scalar"][1], rtol=2e-6, atol=1e-7, msg=lambda m: f"{isa} grad: {m}")


def test_non_contiguous_inputs(device):
    logits, labels = focal_inputs(rows=(40,), classes=24, device=device, dtype=torch.float64, seed=8)
    wide = logits.t().contiguous().t()  # same values, column-major
    assert not wide.is_contiguous()
    weight = torch.rand(40, 2, dtype=torch.float64, device=device)[:, 0]
    assert_matches_reference(wide, labels[::1], weight=weight, reduction="mean")
    soft = torch.rand(24, 40, dtype=torch.float64, device=device).t()
    assert_matches_reference(wide, soft, reduction="sum")


def test_class_indices_equal_their_one_hot_targets(device):
    logits, labels = focal_inputs(device=device, seed=9)
    one_hot = F.one_hot(labels, 21)[..., :20].float()
    for reduction in REDUCTIONS:
        by_index = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, labels, reduction=reduction)
        by_one_hot = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, one_hot, reduction=reduction)
        for a, b in zip(by_index, by_one_hot):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_equals_torchvision(device):
    ops = pytest.importorskip("torchvision.ops")
    logits, labels = focal_inputs(device=device, dtype=torch.float64, seed=10)
    one_hot = F.one_hot(labels, 21)[..., :20].double()
    for reduction in REDUCTIONS:
        for alpha in (0.25, -1.0):
            ours = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, one_hot, alpha=alpha, reduction=reduction)
            theirs = loss_and_grad(ops.sigmoid_focal_loss, logits, one_hot, alpha=alpha, reduction=reduction)
            for a, b in zip(ours, theirs):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_reduced_loss_is_deterministic_across_thread_counts():
    logits, labels = focal_inputs(rows=(6, 9000), classes=20, seed=11)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, labels, avg_factor=100.0))
    finally:
        torch.set_num_threads(threads)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])


# --------------------------------------------------------------------------- autograd


def test_gradcheck(device):
    logits, labels = focal_inputs(rows=(4,), classes=9, device=device, dtype=torch.float64, seed=12)
    weight = torch.rand(4, dtype=torch.float64, device=device)
    element_weight = torch.rand(4, 9, dtype=torch.float64, device=device)
    avg = torch.tensor(3.0, dtype=torch.float64, device=device)
    soft = torch.rand(4, 9, dtype=torch.float64, device=device)
    for gamma in (2.0, 1.5):
        for targets in (labels, soft):
            for reduction in REDUCTIONS:
                w = weight if reduction != "sum" else element_weight
                fn = lambda x, w, a: alwa_ext.sigmoid_focal_loss(  # noqa: E731
                    x, targets, gamma=gamma, weight=w, reduction=reduction, avg_factor=a if reduction == "mean" else None
                )
                inputs = (logits.clone().requires_grad_(), w.clone().requires_grad_(), avg.clone().requires_grad_())
                assert torch.autograd.gradcheck(fn, inputs)


def test_retained_graph_gives_the_same_gradient_twice():
    logits, labels = focal_inputs(seed=13)
    x = logits.clone().requires_grad_()
    loss = alwa_ext.sigmoid_focal_loss(x, labels, reduction="sum")
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x)
    assert torch.equal(first, second)


def reference_sum_grad(logits, labels):
    """d (summed loss) / d logits by the float64 reference, in the logits' dtype."""
    x = logits.detach().double().requires_grad_()
    reference.sigmoid_focal_loss(x, labels, reduction="sum").backward()
    return x.grad.to(logits.dtype)


def test_gradient_memory_is_reused_only_once_released():
    """The CPU kernel writes a gradient into the memory of the last one (cpu/reused_buffer.h)
    only when no tensor holds it: a gradient kept, or a view of it, stays as it was; a
    released one is reused and wholly rewritten."""
    a, labels = focal_inputs(rows=(4, 64), classes=32, seed=40)
    b, _ = focal_inputs(rows=(4, 64), classes=32, seed=41)

    def grad_of(logits):
        return torch.ops.alwa.sigmoid_focal_loss_with_grad(logits, labels, None, None, 0.25, 2.0, "sum")[1]

    kept = grad_of(a)
    kept_values = kept.clone()
    second = grad_of(b)
    assert second.data_ptr() != kept.data_ptr()
    assert torch.equal(kept, kept_values)
    view = second[1:]
    second_values = second.clone()
    del second
    third = grad_of(a)
    assert torch.equal(view, second_values[1:]) and third.data_ptr() != view.data_ptr()
    address = third.data_ptr()
    del third, view
    fourth = grad_of(a)
    assert fourth.data_ptr() == address
    assert torch.equal(fourth, kept_values)
    alwa_ext.cpu.empty_cache()
    assert torch.equal(grad_of(a), kept_values)
    torch.testing.assert_close(kept_values, reference_sum_grad(a, labels), **TOLERANCES[torch.float32])


def test_accumulated_gradients_stay_whole():
    """.grad kept across steps (no zero_grad) holds the gradient's memory: the next call must not
    write there."""
    logits, labels = focal_inputs(rows=(4, 64), classes=32, seed=42)
    x = logits.clone().requires_grad_()
    for _ in range(3):
        alwa_ext.sigmoid_focal_loss(x, labels, reduction="sum").backward()
    torch.testing.assert_close(x.grad, 3 * reference_sum_grad(logits, labels), **TOLERANCES[torch.float32])


def test_double_backward_raises():
    logits, labels = focal_inputs(seed=14, dtype=torch.float64)
    x = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(alwa_ext.sigmoid_focal_loss(x, labels), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_inference_builds_no_graph():
    logits, labels = focal_inputs(seed=15)
    with torch.no_grad():
        loss = alwa_ext.sigmoid_focal_loss(logits.requires_grad_(), labels)
    assert loss.grad_fn is None


@pytest.mark.registrations
def test_opcheck(device):
    logits, labels = focal_inputs(rows=(5,), classes=11, device=device, seed=16)
    soft = torch.rand(5, 11, device=device)
    avg = torch.tensor(4.0, dtype=torch.float64, device=device)
    weight = torch.rand(5, device=device)
    cases = [
        (logits.requires_grad_(), labels, None, None, 0.25, 2.0, "mean"),
        (logits, soft, weight.requires_grad_(), avg.requires_grad_(), -1.0, 1.5, "mean"),
        (logits, labels, weight, None, 0.25, 2.0, "none"),
        (logits, soft, None, None, 0.5, 0.0, "sum"),
    ]
    for args in cases:
        torch.library.opcheck(torch.ops.alwa.sigmoid_focal_loss.default, args)
        plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(torch.ops.alwa.sigmoid_focal_loss_with_grad.default, plain)


@pytest.mark.registrations
def test_compile_fullgraph_forward_and_backward(device):
    torch._dynamo.reset()

    def step(logits, labels, num_positive):
        loss = alwa_ext.sigmoid_focal_loss(logits, labels, avg_factor=num_positive)
        return loss * 2

    compiled = torch.compile(step, fullgraph=True, dynamic=True)
    for rows in (7, 13):
        logits, labels = focal_inputs(rows=(rows,), device=device, seed=rows)
        num_positive = (labels < 20).sum().double()
        eager = loss_and_grad(lambda x, t: step(x, t, num_positive), logits, labels)
        fused = loss_and_grad(lambda x, t: compiled(x, t, num_positive), logits, labels)
        for a, b in zip(fused, eager):
            torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
def test_extreme_logits_are_finite_and_accurate(device, dtype, soft):
    values = torch.tensor([-100.0, -60.0, -20.0, -1.0, 0.0, 1.0, 20.0, 60.0, 100.0])
    logits = values.repeat(2, 1).t().contiguous().reshape(9, 2).repeat(1, 10).to(dtype).to(device)  # (9, 20)
    labels = torch.tensor([0, 20, 3, 20, 0, 20, 1, 20, 0], device=device)
    targets = F.one_hot(labels, 21)[..., :20].to(dtype) if soft else labels
    for gamma in (2.0, 1.5, 0.5):
        loss, grad = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, targets, gamma=gamma, reduction="none")
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), gamma
        exp_loss, exp_grad = expected(logits, targets, gamma=gamma, reduction="none")
        tol = dict(rtol=1e-3, atol=1e-6) if dtype == torch.float32 else TOLERANCES[dtype]
        torch.testing.assert_close(loss.cpu(), exp_loss, **tol)
        torch.testing.assert_close(grad.cpu(), exp_grad, **tol)


def test_nan_in_gives_nan_out(device):
    logits, labels = focal_inputs(rows=(4,), classes=20, device=device, seed=17)
    logits[1, 5] = float("nan")
    for soft in (False, True):
        targets = F.one_hot(labels, 21)[..., :20].float() if soft else labels
        loss, grad = loss_and_grad(alwa_ext.sigmoid_focal_loss, logits, targets, reduction="none")
        assert torch.isnan(loss[1, 5]) and torch.isnan(grad[1, 5])
        assert torch.isfinite(loss[0]).all() and torch.isfinite(grad[0]).all()
        assert torch.isnan(alwa_ext.sigmoid_focal_loss(logits, targets))


def test_empty_inputs(device):
    logits = torch.randn(0, 20, device=device, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long, device=device)
    for reduction in ("mean", "sum"):
        loss = alwa_ext.sigmoid_focal_loss(logits, labels, reduction=reduction)
        assert loss.shape == () and loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, logits)
        assert grad.shape == (0, 20)
    assert alwa_ext.sigmoid_focal_loss(logits, labels, reduction="none").shape == (0, 20)


def test_avg_factor_divides_the_sum(device):
    logits, labels = focal_inputs(device=device, seed=18, dtype=torch.float64)
    total = alwa_ext.sigmoid_focal_loss(logits, labels, reduction="sum")
    for avg in (7.0, torch.tensor(7.0, device=device)):
        mean = alwa_ext.sigmoid_focal_loss(logits, labels, avg_factor=avg)
        torch.testing.assert_close(mean, total / (7.0 + AVG_FACTOR_EPS), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error():
    logits, labels = focal_inputs(rows=(4,), classes=5, seed=19)
    f = alwa_ext.sigmoid_focal_loss
    cases = [
        (lambda: f(logits, torch.tensor([0, 1, 6, 5])), r"targets: class indices must be in \[0, 5\].*got 6 at index 2"),
        (lambda: f(logits, torch.tensor([0, -1, 2, 5])), r"targets: .*got -1 at index 1"),
        (lambda: f(logits, labels[:3]), r"targets: class indices need the shape \(4,\), got \(3,\)"),
        (lambda: f(logits, labels.int()), r"targets: expected int64 class indices or float targets, got Int"),
        (lambda: f(logits, torch.rand(4, 4)), r"targets: float targets need the logits' shape \(4, 5\)"),
        (lambda: f(logits, torch.rand(4, 5, dtype=torch.float64)), r"targets: expected the dtype of logits"),
        (lambda: f(logits.long(), labels), r"logits: expected float32, float64, float16 or bfloat16, got Long"),
        (lambda: f(logits, labels, weight=torch.rand(5)), r"weight: expected shape \(4,\) \(per anchor\) or \(4, 5\)"),
        (lambda: f(logits, labels, reduction="sum", avg_factor=2.0), r"avg_factor: cannot be used with reduction='sum'"),
        (lambda: f(logits, labels, avg_factor=torch.ones(2)), r"avg_factor: expected a 0-dim tensor"),
        (lambda: f(logits, labels, reduction="avg"), r"reduction: expected one of"),
        (lambda: f(logits, labels, alpha=1.5), r"alpha: expected a number <= 1"),
        (lambda: f(logits, labels, gamma=-1.0), r"gamma: expected a finite number >= 0"),
        (lambda: f(logits, labels, gamma=float("nan")), r"gamma: expected a finite number >= 0"),
        (lambda: f(logits.requires_grad_(), torch.rand(4, 5, requires_grad=True)), r"targets: .*no gradient w.r.t. its targets"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --------------------------------------------------------------------------- nn module


def test_nn_module_has_mmdets_signature():
    logits, labels = focal_inputs(rows=(30,), seed=20, dtype=torch.float64)
    weight = torch.rand(30, dtype=torch.float64)
    module = alwa_ext.nn.SigmoidFocalLoss(gamma=1.5, alpha=0.3, reduction="mean", loss_weight=2.0)
    out = module(logits, labels, weight=weight, avg_factor=9.0)
    expected_loss = 2.0 * alwa_ext.sigmoid_focal_loss(logits, labels, gamma=1.5, alpha=0.3, weight=weight, avg_factor=9.0)
    torch.testing.assert_close(out, expected_loss, rtol=0, atol=0)
    assert module(logits, labels, reduction_override="none").shape == logits.shape
    with pytest.raises(ValueError, match="use_sigmoid"):
        alwa_ext.nn.SigmoidFocalLoss(use_sigmoid=False)
    with pytest.raises(ValueError, match="activated"):
        alwa_ext.nn.SigmoidFocalLoss(activated=True)
    with pytest.raises(ValueError, match="reduction_override"):
        module(logits, labels, reduction_override="avg")
