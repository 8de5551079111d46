"""The CPU kernels' SIMD paths against the scalar one, on every path this machine has.

Each vector path (AVX2, AVX-512) must give the scalar path's losses and gradients to float32
rounding (they differ only by fused multiply-adds, the vector atan2 and the summation order),
be bit-identical from run to run and across thread counts, and propagate NaNs alike. Paths the
machine lacks are skipped, not silently passed.
"""
import os
import subprocess
import sys

import pytest
import torch

import alwa_ext
from alwa_ext import cpu
from alwa_ext.kinds import ALPHA_IOU_KINDS, COORDINATE_KINDS
from helpers.raw_ops import box_loss_op
from helpers.child import child_options
from helpers.cpu_vec import vector_atan2

VECTOR_ISAS = ["avx2", "avx512"]
# The kinds the vector paths compute (EIoU and SIoU run the scalar loop on every path).
VECTORISED_KINDS = ALPHA_IOU_KINDS + COORDINATE_KINDS


def require(isa):
    if isa not in cpu.available_isas():
        pytest.skip(f"{isa} is not available on this CPU/build")


def require_a_vector_path():
    """Tests that compare every available path with the scalar one have nothing to compare
    where the scalar path is the only one."""
    if len(cpu.available_isas()) < 2:
        pytest.skip("only the scalar path is available on this CPU/build")


def awkward_boxes(n, seed):
    """pred, target (n, 4): ordinary boxes mixed with empty, inverted, identical, tiny, far
    apart, touching and large-coordinate ones."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    pred = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 0.5], 1)
    xy = xy + torch.randn(n, 2, generator=g) * 10
    target = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 0.5], 1)
    target[0::7] = pred[0::7]  # identical (ties in every min/max)
    pred[1::7, 2] = pred[1::7, 0]  # zero width
    pred[2::7, 2:] = pred[2::7, :2] - 3  # inverted corners: an empty box
    target[3::7] = pred[3::7] + 500  # far apart
    pred[4::7] *= 1e-3  # tiny
    target[5::7, 0] = pred[5::7, 2]  # touching edges
    pred[6::7] += 1e4  # large coordinates
    target[6::7] += 1e4
    return pred, target


def run(pred, target, kind, fmt="xyxy", weight=None, reduction="mean", avg_factor=None):
    """(loss, grad_pred, grad_target) of the raw op, plain options."""
    return box_loss_op(pred, target, kind, weight=weight, avg_factor=avg_factor, reduction=reduction, box_format=fmt,
                       grad_pred=True, grad_target=True)


def on(isa, *args, **kwargs):
    with cpu.use_isa(isa):
        return run(*args, **kwargs)


def assert_close_to_scalar(vec, ref, what):
    for name, a, b in zip(("loss", "grad_pred", "grad_target"), vec, ref):
        # Relative to the gradient's own scale: IoU gradients are ~1/box size.
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * scale.item(), msg=lambda m: f"{what} {name}: {m}")


def test_paths_listed_and_settable():
    available = cpu.available_isas()
    assert available[0] == "scalar"
    assert cpu.isa() in available
    for isa in available:
        with cpu.use_isa(isa):
            assert cpu.isa() == isa
    assert cpu.set_isa("auto") in available
    assert cpu.isa() == available[-1]


def test_unknown_or_unavailable_path_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        cpu.set_isa("sse9")
    for isa in VECTOR_ISAS:
        if isa not in cpu.available_isas():
            with pytest.raises(ValueError, match="not available"):
                cpu.set_isa(isa)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("kind", VECTORISED_KINDS)
def test_matches_scalar_path(isa, kind):
    require(isa)
    # Sizes around the vector widths (8, 16) and the 2048-box reduction blocks.
    for n in (1, 7, 9, 15, 17, 33, 2047, 2049, 3 * 2048 + 21):
        pred, target = awkward_boxes(n, seed=n)
        g = torch.Generator().manual_seed(n + 1)
        weights = [None, torch.rand(n, generator=g), torch.rand(n, 4, generator=g)]
        for fmt in ("xyxy", "cxcywh"):
            for weight in weights:
                for reduction in ("none", "sum", "mean"):
                    what = f"{isa} {kind} n={n} {fmt} weight={None if weight is None else tuple(weight.shape)} {reduction}"
                    vec = on(isa, pred, target, kind, fmt, weight, reduction)
                    ref = on("scalar", pred, target, kind, fmt, weight, reduction)
                    assert_close_to_scalar(vec, ref, what)
                    assert all(torch.isfinite(t).all() for t in vec), what
    # avg_factor (a 0-dim float64 tensor read by the kernel).
    pred, target = awkward_boxes(100, seed=3)
    avg = torch.tensor(37.0, dtype=torch.float64)
    assert_close_to_scalar(on(isa, pred, target, kind, avg_factor=avg), on("scalar", pred, target, kind, avg_factor=avg), "avg_factor")


@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_bit_identical_run_to_run_and_across_threads(isa):
    require(isa)
    pred, target = awkward_boxes(5 * 2048 + 77, seed=11)
    threads = torch.get_num_threads()
    try:
        for kind in ("ciou", "giou", "smooth_l1"):
            torch.set_num_threads(max(threads, 2))
            first, second = on(isa, pred, target, kind), on(isa, pred, target, kind)
            torch.set_num_threads(1)
            single = on(isa, pred, target, kind)
            for a, b, c in zip(first, second, single):
                assert torch.equal(a, b) and torch.equal(a, c), kind
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("kind", VECTORISED_KINDS)
def test_nan_propagates_like_scalar(isa, kind):
    require(isa)
    pred, target = awkward_boxes(40, seed=5)
    pred[3, 1] = float("nan")
    target[21, 2] = float("nan")
    vec = on(isa, pred, target, kind, reduction="none")
    ref = on("scalar", pred, target, kind, reduction="none")
    for a, b in zip(vec, ref):
        assert torch.equal(a.isnan(), b.isnan())


def test_other_dtypes_take_the_scalar_path():
    require_a_vector_path()
    pred, target = awkward_boxes(300, seed=2)
    for dtype in (torch.float64, torch.bfloat16):
        p, t = pred.to(dtype), target.to(dtype)
        outs = [on(isa, p, t, "ciou") for isa in cpu.available_isas()]
        for out in outs[1:]:
            for a, b in zip(out, outs[0]):
                assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("eiou", {}),
        ("siou", {}),
        ("eiou", {"focal_gamma": 0.5}),
        ("ciou", {"alpha": 3.0}),
        ("giou", {"box_format": "deltas"}),
        ("smooth_l1", {"box_format": "deltas"}),
    ],
)
def test_what_is_not_vectorised_takes_the_scalar_path(kind, options):
    # Kinds, formats and options the vector paths refuse run the scalar loop whatever the path:
    # the results are then bit-identical across paths.
    require_a_vector_path()
    pred, target = awkward_boxes(3 * 2048 + 5, seed=9)
    if options.get("box_format") == "deltas":
        options = dict(options, anchors=target + 1.5)
        pred = pred * 1e-3
    outs = []
    for isa in cpu.available_isas():
        p = pred.clone().requires_grad_()
        t = target.clone().requires_grad_()
        with cpu.use_isa(isa):
            loss = alwa_ext.box_loss(p, t, kind, **options)
            loss.backward()
        outs.append((loss.detach(), p.grad, t.grad))
    for out in outs[1:]:
        for a, b in zip(out, outs[0]):
            assert torch.equal(a, b)


def float32_ulps(a, exact):
    """|a - exact| in units of the last place of float32 at exact."""
    exact32 = exact.to(torch.float32)
    ulp = (torch.nextafter(exact32.abs(), torch.tensor(float("inf"))) - exact32.abs()).to(torch.float64)
    return (a.to(torch.float64) - exact).abs() / ulp


@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_vector_atan2_accuracy(isa):
    require(isa)
    g = torch.Generator().manual_seed(0)
    n = 1 << 18
    # Magnitudes over many octaves and every sign, plus ratios near 1 (the octant switch).
    mag = lambda: torch.exp2(torch.rand(n, generator=g, dtype=torch.float64) * 60 - 30)
    sign = lambda: torch.randint(0, 2, (n,), generator=g) * 2 - 1
    y, x = mag() * sign(), mag() * sign()
    near = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    y2 = near * (1 + 1e-6 * torch.randn(n, generator=g, dtype=torch.float64))
    y = torch.cat([y, y2, near]).to(torch.float32)
    x = torch.cat([x, near, y2]).to(torch.float32)
    out = vector_atan2(y, x, isa)
    exact = torch.atan2(y.to(torch.float64), x.to(torch.float64))
    assert float32_ulps(out, exact).max().item() <= 2.0
    # Special values as C's atan2f: signed zeros, infinities, NaN.
    s = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3e38]
    ys = torch.tensor([a for a in s for _ in s], dtype=torch.float32)
    xs = torch.tensor([b for _ in s for b in s], dtype=torch.float32)
    torch.testing.assert_close(vector_atan2(ys, xs, isa), torch.atan2(ys, xs), rtol=3e-7, atol=0, equal_nan=True)
    got, want = vector_atan2(ys, xs, isa), torch.atan2(ys, xs)
    assert torch.equal(got.signbit()[~want.isnan()], want.signbit()[~want.isnan()])  # signed zeros


def test_environment_variable_forces_a_path(tmp_path):
    code = "import alwa_ext; print(alwa_ext.cpu.isa())"
    options = child_options(tmp_path)
    for isa in cpu.available_isas() + ["bogus"]:
        env = dict(options["env"], ALWA_CPU_ISA=isa)
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
        expected = cpu.available_isas()[-1] if isa == "bogus" else isa
        assert done.stdout.strip() == expected, done.stderr
        if isa == "bogus":
            assert "ALWA_CPU_ISA=bogus" in done.stderr
