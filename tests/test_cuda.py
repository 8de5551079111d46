"""CUDA kernels of torch.ops.alwa: against the eager reference and the CPU kernels, gradients,
opcheck, and the properties the kernels promise (no host sync, CUDA graphs, torch.compile,
bit-identical repeats, 64-bit indexing). Every test but the host-side index-math one needs a
CUDA device and is skipped without one.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

import alwa_ext
from alwa_ext import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
pytestmark = pytest.mark.cuda

IOU_KINDS = ("iou", "giou", "diou", "ciou")
LOSS_KINDS = IOU_KINDS + ("l1", "smooth_l1")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")
FORMATS = ("xyxy", "cxcywh")
# (rtol, atol) of CUDA against the reference and the CPU kernel: both compute half types in
# float32 and round the result, so the difference is about one rounding of the stored type.
TOLERANCES = {
    torch.float32: (2e-5, 2e-5),
    torch.float64: (1e-10, 1e-10),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


# --------------------------------------------------------------------------- inputs


def random_boxes(n, box_format="xyxy", *, scale=100.0, dtype=torch.float32, device="cuda", seed=0):
    """(pred, target) of n well-formed boxes with overlapping, disjoint and nested pairs."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale * 0.5 + 1.0
    pred = torch.cat((xy, xy + wh), -1)
    target = pred + torch.randn(n, 4, generator=g, dtype=torch.float64) * scale * 0.1
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 0.5)
    if n >= 8:
        target[: n // 8] += scale  # disjoint pairs
    if box_format == "cxcywh":
        pred = torch.cat(((pred[:, :2] + pred[:, 2:]) / 2, pred[:, 2:] - pred[:, :2]), -1)
        target = torch.cat(((target[:, :2] + target[:, 2:]) / 2, target[:, 2:] - target[:, :2]), -1)
    return pred.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype)


def degenerate_boxes(dtype=torch.float32, device="cuda"):
    """Pairs on every edge of the formulas: empty, inverted, identical, point, huge, far."""
    rows = [
        ([0, 0, 0, 0], [0, 0, 0, 0]),
        ([0, 0, 0, 0], [0, 0, 1, 1]),
        ([1, 1, 1, 1], [1, 1, 1, 1]),
        ([0, 0, 1, 1], [0, 0, 1, 1]),
        ([2, 2, 1, 1], [0, 0, 1, 1]),
        ([2, 2, 1, 1], [3, 3, 1, 1]),
        ([0, 0, 0, 5], [0, 0, 5, 0]),
        ([0, 0, 10, 0], [0, 0, 10, 0]),
        ([0, 0, 1, 1], [1, 1, 2, 2]),
        ([0, 0, 1, 1], [1000, 1000, 1001, 1001]),
        ([0, 0, 4000, 3000], [10, 10, 3990, 2990]),
        ([-5, -5, 5, 5], [-5, -5, 5, 5]),
    ]
    pred = torch.tensor([r[0] for r in rows], dtype=dtype, device=device)
    target = torch.tensor([r[1] for r in rows], dtype=dtype, device=device)
    return pred, target


def sample_inputs(device="cuda", dtype=torch.float32):
    """(args, kwargs) of alwa_ext.box_loss covering weights, avg_factor and odd shapes."""
    n = 257  # more than one warp, not a multiple of anything
    for kind in LOSS_KINDS:
        for box_format in FORMATS:
            pred, target = random_boxes(n, box_format, dtype=dtype, device=device, seed=n)
            yield (pred, target, kind), dict(box_format=box_format)
            yield (pred, target, kind), dict(box_format=box_format, reduction="none")
            w_box = torch.rand(n, dtype=dtype, device=device)
            w_coord = torch.rand(n, 4, dtype=dtype, device=device)
            yield (pred, target, kind), dict(box_format=box_format, weight=w_box, reduction="sum")
            avg = torch.tensor(37.5, dtype=torch.float64 if dtype == torch.float64 else torch.float32, device=device)
            yield (pred, target, kind), dict(box_format=box_format, weight=w_coord, avg_factor=avg)
    pred, target = random_boxes(6, dtype=dtype, device=device)
    yield (pred.view(2, 3, 4), target.view(2, 3, 4), "giou"), dict(reduction="none")


def loss_and_grads(fn, pred, target, kind, **kwargs):
    pred = pred.detach().clone().requires_grad_(True)
    target = target.detach().clone().requires_grad_(True)
    kwargs = dict(kwargs)
    if kwargs.get("weight") is not None:
        kwargs["weight"] = kwargs["weight"].detach().clone().requires_grad_(True)
    out = fn(pred, target, kind, **kwargs)
    grad_out = torch.linspace(0.5, 1.5, out.numel(), device=out.device, dtype=out.dtype).view(out.shape)
    inputs = [pred, target] + ([kwargs["weight"]] if kwargs.get("weight") is not None else [])
    grads = torch.autograd.grad(out, inputs, grad_out)
    return (out.detach(),) + tuple(g.detach() for g in grads)


def assert_close(actual, expected, dtype, scale=1.0):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.cpu().to(expected.dtype), expected.cpu(), rtol=rtol, atol=atol * scale)


# --------------------------------------------------------------------------- index math (no GPU)


def test_index_math_past_int32(tmp_path):
    """The kernels' grid and index math for more than 2^31 elements, checked on the host."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("needs nvcc")
    binary = tmp_path / "index_math_test"
    subprocess.run(
        [nvcc, "-std=c++17", "-I", os.path.join(ROOT, "csrc"), "-I", os.path.join(ROOT, "csrc", "include"),
         "-o", str(binary), os.path.join(ROOT, "tests", "cuda", "index_math_test.cu")],
        check=True, capture_output=True, text=True,
    )
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "index math ok" in result.stdout


# --------------------------------------------------------------------------- box_loss correctness


@requires_cuda
@pytest.mark.parametrize("box_format", FORMATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_box_loss_matches_reference_and_cpu(kind, dtype, reduction, box_format):
    n = 1000  # several blocks' worth of warps
    # Coordinates in the thousands must not overflow the half types (computed in float32);
    # coordinate-wise sums of so large differences would overflow float16's output, though.
    half = dtype in (torch.float16, torch.bfloat16)
    scale = (2000.0 if kind in IOU_KINDS else 10.0) if half else 100.0
    pred, target = random_boxes(n, box_format, scale=scale, dtype=dtype, seed=len(kind) + len(reduction))
    variants = [dict(), dict(weight=torch.rand(n, device="cuda", dtype=dtype)),
                dict(weight=torch.rand(n, 4, device="cuda", dtype=dtype))]
    if reduction == "mean":
        # float64 so that the reference's avg_factor + eps is not rounded to float32.
        variants.append(dict(avg_factor=torch.tensor(123.0, device="cuda", dtype=torch.float64)))
    for extra in variants:
        kwargs = dict(reduction=reduction, box_format=box_format, **extra)
        cuda = loss_and_grads(alwa_ext.box_loss, pred, target, kind, **kwargs)
        ref = loss_and_grads(reference.box_loss, pred, target, kind, **kwargs)
        cpu_kwargs = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
        cpu = loss_and_grads(alwa_ext.box_loss, pred.cpu(), target.cpu(), kind, **cpu_kwargs)
        # A sum over n elements carries n roundings of the reference's own.
        scale = n if reduction == "sum" else 1.0
        for got, want_ref, want_cpu in zip(cuda, ref, cpu):
            assert got.device.type == "cuda" and got.dtype == want_ref.dtype
            assert torch.isfinite(got).all()
            assert_close(got, want_ref, dtype, scale)
            assert_close(got, want_cpu, dtype, scale)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sample_inputs_match_reference(dtype):
    for args, kwargs in sample_inputs("cuda", dtype):
        got = loss_and_grads(alwa_ext.box_loss, *args, **kwargs)
        want = loss_and_grads(reference.box_loss, *args, **kwargs)
        scale = args[0].shape[0] if kwargs.get("reduction") == "sum" else 1.0
        for g, w in zip(got, want):
            assert_close(g, w, dtype, scale)


@requires_cuda
@pytest.mark.parametrize("n", [1, 255, 256, 257, 70_000, 300_001])
def test_box_loss_sizes_single_and_multi_block(n):
    """One block writes the reduced loss itself; more go through the finishing block."""
    pred, target = random_boxes(n, dtype=torch.float64, seed=n)
    for reduction in ("sum", "mean"):
        got = loss_and_grads(alwa_ext.box_loss, pred, target, "ciou", reduction=reduction)
        want = loss_and_grads(alwa_ext.box_loss, pred.cpu(), target.cpu(), "ciou", reduction=reduction)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.cpu(), w, rtol=1e-9, atol=1e-9)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_boxes_take_the_element_path(dtype):
    """Boxes whose storage starts off a vector boundary load element by element, same values."""
    n = 999
    pred, target = random_boxes(n, dtype=dtype)
    storage = torch.empty(2 * 4 * n + 1, dtype=dtype, device="cuda")
    pred_off = storage[1 : 1 + 4 * n].view(n, 4)
    target_off = storage[1 + 4 * n :].view(n, 4)
    pred_off.copy_(pred)
    target_off.copy_(target)
    assert pred_off.is_contiguous() and pred_off.data_ptr() % 16 != 0
    for kind in LOSS_KINDS:
        for reduction in ("none", "sum"):
            aligned = loss_and_grads(alwa_ext.box_loss, pred, target, kind, reduction=reduction)
            misaligned = loss_and_grads(alwa_ext.box_loss, pred_off, target_off, kind, reduction=reduction)
            for a, b in zip(aligned, misaligned):
                assert torch.equal(a, b)


@requires_cuda
def test_non_contiguous_inputs():
    pred, target = random_boxes(300)
    pred_t = pred.t().contiguous().t()  # column-major
    target_nc = torch.cat((target, target), -1)[:, :4]
    assert not pred_t.is_contiguous() and not target_nc.is_contiguous()
    for kind in LOSS_KINDS:
        got = loss_and_grads(alwa_ext.box_loss, pred_t, target_nc, kind)
        want = loss_and_grads(alwa_ext.box_loss, pred, target, kind)
        for g, w in zip(got, want):
            assert torch.equal(g, w)


@requires_cuda
def test_empty_inputs():
    pred = torch.empty(0, 4, device="cuda", requires_grad=True)
    target = torch.empty(0, 4, device="cuda")
    for reduction in REDUCTIONS:
        out = alwa_ext.box_loss(pred, target, "giou", reduction=reduction)
        assert out.device.type == "cuda"
        if reduction != "none":
            assert out.item() == 0.0
            (grad,) = torch.autograd.grad(out, pred)
            assert grad.shape == (0, 4)
    boxes = torch.rand(3, 4, device="cuda", requires_grad=True)
    iou = alwa_ext.box_iou(boxes, torch.empty(0, 4, device="cuda"))
    assert iou.shape == (3, 0)
    (grad,) = torch.autograd.grad(iou.sum(), boxes)
    assert torch.equal(grad, torch.zeros_like(boxes))


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_degenerate_boxes_finite(kind, dtype):
    pred, target = degenerate_boxes(dtype)
    for box_format in FORMATS:
        for eps in (1e-7, 0.0):
            got = loss_and_grads(
                alwa_ext.box_loss, pred, target, kind, reduction="none", box_format=box_format, eps=eps
            )
            cpu = loss_and_grads(
                alwa_ext.box_loss, pred.cpu(), target.cpu(), kind, reduction="none", box_format=box_format, eps=eps
            )
            wide = loss_and_grads(  # the same numbers, stored in float64
                alwa_ext.box_loss, pred.double(), target.double(), kind, reduction="none",
                box_format=box_format, eps=eps,
            )
            limit = torch.finfo(dtype).max
            for g, c, w in zip(got, cpu, wide):
                # Finite everywhere, except where the value itself is out of the dtype's range
                # (DIoU's centre distance over a diagonal of eps, for float16).
                representable = w.abs() <= limit * 0.99
                assert torch.isfinite(g.cpu()[representable]).all()
                assert torch.equal(torch.isfinite(g.cpu()), torch.isfinite(c))
                assert_close(g, c, dtype, scale=100.0)


# --------------------------------------------------------------------------- box_iou


@requires_cuda
@pytest.mark.parametrize("box_format", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", IOU_KINDS)
def test_box_iou_matches_reference_and_cpu(kind, dtype, box_format):
    # Shapes that exercise partial tiles, one and several chunks of the backward.
    for m, n in ((1, 1), (70, 300), (3, 5000), (1500, 40)):
        boxes1, _ = random_boxes(m, box_format, dtype=dtype, seed=m)
        boxes2, _ = random_boxes(n, box_format, dtype=dtype, seed=n + 1)
        grad = torch.rand(m, n, device="cuda", dtype=dtype)
        results = []
        for fn, b1, b2, g in ((alwa_ext.box_iou, boxes1, boxes2, grad),
                              (reference.box_iou, boxes1, boxes2, grad),
                              (alwa_ext.box_iou, boxes1.cpu(), boxes2.cpu(), grad.cpu())):
            b1 = b1.detach().clone().requires_grad_(True)
            b2 = b2.detach().clone().requires_grad_(True)
            out = fn(b1, b2, kind, box_format=box_format)
            results.append((out.detach(),) + torch.autograd.grad(out, (b1, b2), g))
        got, ref, cpu = results
        assert_close(got[0], ref[0], dtype)
        assert_close(got[0], cpu[0], dtype)
        for i, length in ((1, n), (2, m)):  # a gradient is a sum over `length` pairs
            assert_close(got[i], ref[i], dtype, scale=max(1.0, length / 10))
            assert_close(got[i], cpu[i], dtype, scale=max(1.0, length / 10))


# --------------------------------------------------------------------------- autograd, opcheck


# CIoU holds alpha constant in its gradient (torchvision's convention), which finite
# differences do not: its gradients are checked against the reference's autograd instead.
GRADCHECK_KINDS = tuple(k for k in LOSS_KINDS if k != "ciou")


@requires_cuda
@pytest.mark.parametrize("box_format", FORMATS)
@pytest.mark.parametrize("kind", GRADCHECK_KINDS)
def test_gradcheck_float64(kind, box_format):
    for seed in range(3):
        pred, target = random_boxes(12, box_format, dtype=torch.float64, seed=seed)
        weight = torch.rand(12, dtype=torch.float64, device="cuda")
        avg = torch.tensor(5.0, dtype=torch.float64, device="cuda")
        for kwargs in (dict(reduction="mean"), dict(reduction="none", weight=weight),
                       dict(reduction="mean", weight=weight, avg_factor=avg)):
            def fn(p, t, w=None, _kwargs=kwargs):
                kw = dict(_kwargs)
                if w is not None:
                    kw["weight"] = w
                return alwa_ext.box_loss(p, t, kind, box_format=box_format, **kw)

            inputs = [pred.clone().requires_grad_(True), target.clone().requires_grad_(True)]
            if "weight" in kwargs:
                inputs.append(kwargs.pop("weight").clone().requires_grad_(True))
            assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@requires_cuda
@pytest.mark.parametrize("box_format", FORMATS)
@pytest.mark.parametrize("kind", [k for k in IOU_KINDS if k in GRADCHECK_KINDS])
def test_gradcheck_box_iou_float64(kind, box_format):
    boxes1, _ = random_boxes(5, box_format, dtype=torch.float64, seed=1)
    boxes2, _ = random_boxes(7, box_format, dtype=torch.float64, seed=2)
    fn = lambda a, b: alwa_ext.box_iou(a, b, kind, box_format=box_format)  # noqa: E731
    assert torch.autograd.gradcheck(
        fn, (boxes1.requires_grad_(True), boxes2.requires_grad_(True)), eps=1e-6, atol=1e-5, rtol=1e-4
    )


@requires_cuda
def test_opcheck():
    # Every fifth sample: each kind and format, with and without weight/avg_factor (opcheck
    # compiles, so all of them would take minutes).
    for args, kwargs in list(sample_inputs("cuda", torch.float32))[::5]:
        pred, target, kind = args
        weight, avg = kwargs.get("weight"), kwargs.get("avg_factor")
        reduction = kwargs.get("reduction", "mean")
        op_args = (pred.clone().requires_grad_(True), target, weight, avg, kind, reduction,
                   kwargs.get("box_format", "xyxy"), 1e-7, 1.0, True, False)
        torch.library.opcheck(torch.ops.alwa.box_loss.default, op_args)
    boxes1, boxes2 = random_boxes(9)
    for kind in IOU_KINDS:
        torch.library.opcheck(torch.ops.alwa.box_iou.default,
                              (boxes1.requires_grad_(True), boxes2, kind, "xyxy", 1e-7))
        grad = torch.rand(9, 9, device="cuda")
        torch.library.opcheck(torch.ops.alwa.box_iou_backward.default,
                              (grad, boxes1.detach(), boxes2, kind, "xyxy", 1e-7, True, True))


# --------------------------------------------------------------------------- no host sync


def _forward_backward(pred, target, kind, **kwargs):
    loss = alwa_ext.box_loss(pred, target, kind, **kwargs)
    return (loss,) + torch.autograd.grad(loss.sum(), (pred, target))


@requires_cuda
def test_no_host_sync():
    pred, target = random_boxes(5000)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    avg = torch.tensor(40.0, device="cuda")
    weight = torch.rand(5000, device="cuda")
    boxes1, boxes2 = random_boxes(300)
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for kind in LOSS_KINDS:
            for kwargs in (dict(reduction="none"), dict(reduction="sum", weight=weight),
                           dict(reduction="mean", avg_factor=avg), dict(reduction="mean", avg_factor=12.0)):
                _forward_backward(pred, target, kind, **kwargs)
        for kind in IOU_KINDS:
            iou = alwa_ext.box_iou(boxes1, boxes2, kind)
            torch.autograd.grad(iou, (boxes1, boxes2), torch.ones_like(iou))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()


# --------------------------------------------------------------------------- graphs, compile, determinism


@requires_cuda
@pytest.mark.parametrize("kind", ("giou", "ciou", "smooth_l1"))
def test_cuda_graph_capture_and_replay(kind):
    n = 70_000  # several blocks: the finishing block is captured too
    pred, target = random_boxes(n, seed=1)
    static_pred = pred.clone().requires_grad_(True)
    static_target = target.clone()
    static_avg = torch.tensor(100.0, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graph asks
        for _ in range(2):
            loss = alwa_ext.box_loss(static_pred, static_target, kind, avg_factor=static_avg)
            torch.autograd.grad(loss, static_pred)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = alwa_ext.box_loss(static_pred, static_target, kind, avg_factor=static_avg)
        (static_grad,) = torch.autograd.grad(static_loss, static_pred)
        static_iou = alwa_ext.box_iou(static_pred.detach()[:300], static_target[:200], "giou")
    for seed in (2, 3):
        new_pred, new_target = random_boxes(n, seed=seed)
        static_pred.data.copy_(new_pred)
        static_target.copy_(new_target)
        static_avg.fill_(float(seed * 10))
        graph.replay()
        p = new_pred.clone().requires_grad_(True)
        want = alwa_ext.box_loss(p, new_target, kind, avg_factor=torch.tensor(float(seed * 10), device="cuda"))
        (want_grad,) = torch.autograd.grad(want, p)
        assert torch.equal(static_loss, want)
        assert torch.equal(static_grad, want_grad)
        assert torch.equal(static_iou, alwa_ext.box_iou(new_pred[:300], new_target[:200], "giou"))


@requires_cuda
@pytest.mark.parametrize("kind", ("giou", "ciou", "l1"))
def test_compile_reduce_overhead(kind):
    torch._dynamo.reset()

    def step(pred, target, avg):
        return alwa_ext.box_loss(pred, target, kind, avg_factor=avg)

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    avg = torch.tensor(50.0, device="cuda")
    for seed in range(4):  # cudagraph trees record on a later call, then replay
        pred, target = random_boxes(4096, seed=seed)
        p1 = pred.clone().requires_grad_(True)
        loss = compiled(p1, target, avg)
        loss.backward()
        p2 = pred.clone().requires_grad_(True)
        want = step(p2, target, avg)
        want.backward()
        torch.testing.assert_close(loss.detach().clone(), want.detach(), rtol=0, atol=0)
        torch.testing.assert_close(p1.grad, p2.grad, rtol=0, atol=0)


@requires_cuda
def test_bit_identical_repeats():
    pred, target = random_boxes(1 << 20, seed=5)
    pred.requires_grad_(True)
    weight = torch.rand(1 << 20, device="cuda")
    boxes1, boxes2 = random_boxes(3000, seed=6)
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    grad = torch.rand(3000, 3000, device="cuda")
    first = None
    for _ in range(3):
        results = []
        for kind in LOSS_KINDS:
            loss = alwa_ext.box_loss(pred, target, kind, weight=weight)
            results += [loss] + list(torch.autograd.grad(loss, pred))
        iou = alwa_ext.box_iou(boxes1, boxes2, "ciou")
        results += [iou] + list(torch.autograd.grad(iou, (boxes1, boxes2), grad))
        if first is None:
            first = results
        else:
            for a, b in zip(first, results):
                assert torch.equal(a, b)


@requires_cuda
def test_current_stream_and_device_guard():
    pred, target = random_boxes(3000)
    want = alwa_ext.box_loss(pred, target, "ciou")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = alwa_ext.box_loss(pred, target, "ciou")
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(got, want)
    if torch.cuda.device_count() > 1:
        p1, t1 = pred.to("cuda:1"), target.to("cuda:1")
        with torch.cuda.device(0):
            got1 = alwa_ext.box_loss(p1, t1, "ciou")
        assert got1.device == torch.device("cuda:1")
        assert torch.equal(got1.cpu(), want.cpu())


@requires_cuda
@pytest.mark.slow
def test_more_than_2_31_elements():
    """A real run past 2^31 coordinates: (2^29 + 1024) boxes of float16, about 14 GB in all."""
    n = (1 << 29) + 1024
    needed = n * 4 * 2 * 3 + n * 2 + (1 << 30)  # pred, target, grad_pred, per-box loss, slack
    free, _ = torch.cuda.mem_get_info()
    if free < needed:
        pytest.skip(f"needs {needed / 2**30:.0f} GiB of free GPU memory")
    period = 1024
    small_pred, small_target = random_boxes(period, dtype=torch.float16, seed=9)
    pred = small_pred.repeat(n // period, 1)
    target = small_target.repeat(n // period, 1)
    assert pred.numel() > 2**31
    loss, grad_pred, _ = torch.ops.alwa.box_loss(
        pred, target, None, None, "giou", "none", "xyxy", 1e-7, 1.0, True, False
    )
    want_loss, want_grad, _ = torch.ops.alwa.box_loss(
        small_pred, small_target, None, None, "giou", "none", "xyxy", 1e-7, 1.0, True, False
    )
    # The last period sits past element 2^31: it must match the small call exactly.
    assert torch.equal(loss[-period:], want_loss)
    assert torch.equal(grad_pred[-period:], want_grad)
    assert torch.equal(loss[:period], want_loss)
    del loss, grad_pred
    mean = alwa_ext.box_loss(pred, target, "giou", reduction="mean")
    torch.testing.assert_close(mean.float().cpu(), want_loss.float().mean().cpu(), rtol=1e-2, atol=0)
