"""What only the CUDA kernels have: agreement with the CPU kernels across their launch geometry
(blocks, tiles, chunks, vector loads), on the host execution of the kernels in every run
(``[alwa_cuda_host]`` and ``[alwa_cuda_host_pass]``: tests/cuda_host/) and on a GPU where there is
one (``[gpu]``); and what only a GPU can show: no host sync, CUDA graphs, torch.compile's
"reduce-overhead" mode, the current stream and device guard, and a real run past 2^31 elements.

Values and gradients against the eager reference are the ``[cuda_host]`` and ``[cuda]`` variants
of the reference tests (test_box_loss.py, test_deltas.py, test_box_iou.py, test_alwa.py, ...);
what only the host execution can show (the launches' geometry, thread orders, the emulator's own
checks) is in tests/cuda_host/.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import alwa_ext
from alwa_ext import ALWA
from helpers import reference
from alwa_ext.kinds import (ALPHA_IOU_KINDS, ALWA_STATISTICS, ALWA_WINDOW_SHAPE, BOX_FORMATS, COORDINATE_KINDS,
                            LOSS_KINDS, REDUCTIONS)
from helpers.alwa import feed, loss_sequences
from helpers.assign import OUTPUTS, assign_case
from helpers.boxes import DTYPES, box_pairs, degenerate_pairs, delta_pairs
from helpers.compare import tolerance
from helpers.devices import requires_cuda
from helpers.raw_ops import box_loss_op
from helpers.variants import VARIANTS, variant_id


def loss_and_grads(fn, pred, target, kind, **kwargs):
    """Loss and the gradients w.r.t. pred, target and (when given) weight, under a non-uniform
    upstream gradient."""
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


def on_cpu(kwargs):
    return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}


def assert_close(actual, expected, dtype, scale=1.0, kind="giou", options=None):
    """Within the dtype's tolerance; ``scale`` widens atol for sums over many elements."""
    tol = tolerance(dtype, kind, options)
    torch.testing.assert_close(actual.cpu().to(expected.dtype), expected.cpu(), rtol=tol["rtol"], atol=tol["atol"] * scale)


def on_kernels(cuda_kernels, fn, *args, **kwargs):
    """fn(*args, **kwargs) with its torch.ops.alwa calls on the CUDA kernels."""
    with cuda_kernels.run():
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- CUDA against CPU


@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_box_loss_matches_cpu_kernels(cuda_kernels, variant, dtype, reduction, box_format):
    kind, extra = variant
    device = cuda_kernels.device
    n = 1000  # several blocks' worth of warps, the last block partial
    # Coordinates in the thousands must not overflow the half types (computed in float32);
    # coordinate-wise sums of so large differences would overflow float16's output, though.
    half = dtype in (torch.float16, torch.bfloat16)
    scale = (10.0 if kind in COORDINATE_KINDS else 2000.0) if half else 100.0
    pred, target = box_pairs(n, dtype=dtype, box_format=box_format, seed=len(kind) + len(reduction), scale=scale,
                             device=device)
    variants = [dict(), dict(weight=torch.rand(n, device=device, dtype=dtype)),
                dict(weight=torch.rand(n, 4, device=device, dtype=dtype))]
    if reduction == "mean":
        # float64 so that the reference's avg_factor + eps is not rounded to float32.
        variants.append(dict(avg_factor=torch.tensor(123.0, device=device, dtype=torch.float64)))
    for options in variants:
        kwargs = dict(reduction=reduction, box_format=box_format, **extra, **options)
        cuda = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, pred, target, kind, **kwargs)
        cpu = loss_and_grads(alwa_ext.box_loss, pred.cpu(), target.cpu(), kind, **on_cpu(kwargs))
        # A sum over n elements carries n roundings.
        scale = n if reduction == "sum" else 1.0
        for got, want in zip(cuda, cpu):
            assert got.device.type == torch.device(device).type and got.dtype == want.dtype
            assert torch.isfinite(got).all()
            assert_close(got, want, dtype, scale, kind, extra)


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_deltas_match_cpu_kernels(cuda_kernels, kind, dtype):
    deltas, anchors, target = delta_pairs(1000, seed=3, dtype=dtype, device=cuda_kernels.device)
    kwargs = dict(box_format="deltas", anchors=anchors, delta_stds=(0.1, 0.1, 0.2, 0.2), reduction="none")
    cuda = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, deltas, target, kind, **kwargs)
    cpu = loss_and_grads(alwa_ext.box_loss, deltas.cpu(), target.cpu(), kind, **on_cpu(kwargs))
    for got, want in zip(cuda, cpu):
        assert_close(got, want, dtype, kind=kind)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 70_000, 300_001])
def test_box_loss_sizes_single_and_multi_block(cuda_kernels, n):
    """One block writes the reduced loss itself; more go through the finishing block; past the
    resident blocks of an H100 (1056 of 256 threads) the grid-stride loop goes round again."""
    pred, target = box_pairs(n, seed=n, device=cuda_kernels.device)
    for reduction in ("sum", "mean"):
        got = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, pred, target, "ciou", reduction=reduction)
        want = loss_and_grads(alwa_ext.box_loss, pred.cpu(), target.cpu(), "ciou", reduction=reduction)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.cpu(), w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_boxes_take_the_element_path(cuda_kernels, dtype):
    """Boxes whose storage starts off a vector boundary load element by element, same values
    (a vector load of them would fault)."""
    n = 999
    device = cuda_kernels.device
    pred, target = box_pairs(n, dtype=dtype, scale=100.0, device=device)
    storage = torch.empty(2 * 4 * n + 1, dtype=dtype, device=device)
    pred_off = storage[1 : 1 + 4 * n].view(n, 4)
    target_off = storage[1 + 4 * n :].view(n, 4)
    pred_off.copy_(pred)
    target_off.copy_(target)
    assert pred_off.is_contiguous() and pred_off.data_ptr() % 16 != 0
    for kind in LOSS_KINDS:
        for reduction in ("none", "sum"):
            aligned = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, pred, target, kind,
                                 reduction=reduction)
            misaligned = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, pred_off, target_off, kind,
                                    reduction=reduction)
            for a, b in zip(aligned, misaligned):
                assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_degenerate_boxes_match_cpu_kernels(cuda_kernels, kind, dtype):
    pred, target = degenerate_pairs(dtype, cuda_kernels.device)
    for box_format in BOX_FORMATS:
        for eps in (1e-7, 0.0):
            options = dict(reduction="none", box_format=box_format, eps=eps)
            got = on_kernels(cuda_kernels, loss_and_grads, alwa_ext.box_loss, pred, target, kind, **options)
            cpu = loss_and_grads(alwa_ext.box_loss, pred.cpu(), target.cpu(), kind, **options)
            # The same numbers, stored in float64.
            wide = loss_and_grads(alwa_ext.box_loss, pred.cpu().double(), target.cpu().double(), kind, **options)
            limit = torch.finfo(dtype).max
            for g, c, w in zip(got, cpu, wide):
                # Finite everywhere, except where the value itself is out of the dtype's range
                # (DIoU's centre distance over a diagonal of eps, for float16).
                representable = (w.abs() <= limit * 0.99).cpu()
                assert torch.isfinite(g.cpu()[representable]).all()
                assert torch.equal(torch.isfinite(g.cpu()), torch.isfinite(c))
                assert_close(g, c, dtype, scale=100.0, kind=kind)


@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_box_iou_matches_cpu_kernels_and_reference_across_tiles(cuda_kernels, kind, dtype, box_format):
    # Shapes that exercise partial tiles, one and several chunks of the backward.
    device = cuda_kernels.device
    for m, n in ((1, 1), (70, 300), (3, 5000), (1500, 40)):
        boxes1, _ = box_pairs(m, dtype=dtype, box_format=box_format, seed=m, scale=100.0, device=device)
        boxes2, _ = box_pairs(n, dtype=dtype, box_format=box_format, seed=n + 1, scale=100.0, device=device)
        grad = torch.rand(m, n, device=device, dtype=dtype)
        results = []
        for on, fn, b1, b2, g in ((cuda_kernels, alwa_ext.box_iou, boxes1, boxes2, grad),
                                  (None, reference.box_iou, boxes1.cpu(), boxes2.cpu(), grad.cpu()),
                                  (None, alwa_ext.box_iou, boxes1.cpu(), boxes2.cpu(), grad.cpu())):
            b1 = b1.detach().clone().requires_grad_(True)
            b2 = b2.detach().clone().requires_grad_(True)
            with on.run() if on is not None else torch.enable_grad():
                out = fn(b1, b2, kind, box_format=box_format)
                results.append((out.detach(),) + torch.autograd.grad(out, (b1, b2), g))
        got, ref, cpu = results
        assert_close(got[0], ref[0], dtype)
        assert_close(got[0], cpu[0], dtype)
        for i, length in ((1, n), (2, m)):  # a gradient is a sum over `length` pairs
            assert_close(got[i], ref[i], dtype, scale=max(1.0, length / 10))
            assert_close(got[i], cpu[i], dtype, scale=max(1.0, length / 10))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gamma", [2.0, 1.5])
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "float"])
def test_focal_loss_matches_cpu_kernels(cuda_kernels, soft, gamma, dtype, reduction):
    device = cuda_kernels.device
    rows, classes = 613, 21  # 12873 elements: 51 blocks, the last partial, rows across blocks
    generator = torch.Generator().manual_seed(int(gamma * 10) + len(reduction))
    logits = (torch.randn(rows, classes, generator=generator) * 4).to(dtype)
    targets = (torch.rand(rows, classes, generator=generator).to(dtype) if soft
               else torch.randint(0, classes + 1, (rows,), generator=generator))
    options = [dict(), dict(weight=torch.rand(rows, generator=generator).to(dtype)),
               dict(weight=torch.rand(rows, classes, generator=generator).to(dtype))]
    if reduction == "mean":
        options.append(dict(avg_factor=torch.tensor(77.0, dtype=torch.float64)))
    for option in options:
        def loss_and_grad(logits, targets, **kwargs):
            x = logits.detach().clone().requires_grad_(True)
            out = alwa_ext.sigmoid_focal_loss(x, targets, alpha=0.25, gamma=gamma, reduction=reduction, **kwargs)
            upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
            return out.detach(), torch.autograd.grad(out, x, upstream)[0]

        on_device = {k: v.to(device) for k, v in option.items()}
        got = on_kernels(cuda_kernels, loss_and_grad, logits.to(device), targets.to(device), **on_device)
        want = loss_and_grad(logits, targets, **option)
        scale = rows * classes if reduction == "sum" else 1.0
        for g, w in zip(got, want):
            assert torch.isfinite(g).all()
            assert_close(g, w, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_distribution_focal_loss_matches_cpu_kernels(cuda_kernels, dtype, reduction):
    device = cuda_kernels.device
    boxes, bins = 5003, 16  # 20012 rows: 79 blocks, the last partial
    generator = torch.Generator().manual_seed(len(reduction))
    logits = (torch.randn(boxes, 4, bins, generator=generator) * 3).to(dtype)
    target = (torch.rand(boxes, 4, generator=generator) * (bins - 1)).to(dtype)
    weight = torch.rand(boxes, generator=generator).to(dtype)
    weight[::7] = 0

    def loss_and_grad(logits, target, weight):
        x = logits.detach().clone().requires_grad_(True)
        out = alwa_ext.distribution_focal_loss(x, target, weight=weight, reduction=reduction)
        upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
        return out.detach(), torch.autograd.grad(out, x, upstream)[0]

    previous = torch.ops.alwa.set_cpu_isa("scalar")  # the CUDA kernel's own loop, on the CPU
    try:
        want = loss_and_grad(logits, target, weight)
    finally:
        torch.ops.alwa.set_cpu_isa(previous)
    got = on_kernels(cuda_kernels, loss_and_grad, logits.to(device), target.to(device), weight.to(device))
    scale = boxes * 4 if reduction == "sum" else 1.0
    for g, w in zip(got, want):
        if cuda_kernels.on_host and reduction == "none":
            assert torch.equal(g.cpu(), w)  # the same rows in the same order
        assert_close(g, w, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_distribution_expectation_matches_cpu_kernels(cuda_kernels, dtype):
    generator = torch.Generator().manual_seed(5)
    logits = (torch.randn(5003, 4, 16, generator=generator) * 3).to(dtype)

    def value_and_grad(x):
        x = x.detach().clone().requires_grad_(True)
        out = alwa_ext.distribution_expectation(x)
        upstream = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
        return out.detach(), torch.autograd.grad(out, x, upstream)[0]

    previous = torch.ops.alwa.set_cpu_isa("scalar")  # the CUDA kernel's own loop, on the CPU
    try:
        want = value_and_grad(logits)
    finally:
        torch.ops.alwa.set_cpu_isa(previous)
    got = on_kernels(cuda_kernels, value_and_grad, logits.to(cuda_kernels.device))
    for g, w in zip(got, want):
        if cuda_kernels.on_host:
            assert torch.equal(g.cpu(), w)  # the same row function, the same order
        assert_close(g, w, dtype)


@pytest.mark.parametrize("topk, topk2", [(10, None), (7, 1)])
@pytest.mark.parametrize("score_dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_task_aligned_assign_matches_cpu_kernels(cuda_kernels, topk, topk2, score_dtype):
    case = assign_case(batch=3, gts=40, classes=7, seed=topk, score_dtype=score_dtype, zero_scores=0.2)
    kwargs = dict(topk=topk, topk2=topk2, alpha=0.5, beta=6.0, min_side=16.0)
    want = alwa_ext.task_aligned_assign(*case, **kwargs)
    with cuda_kernels.run():
        got = alwa_ext.task_aligned_assign(*(t.to(cuda_kernels.device) for t in case), **kwargs)
    for name, g, w in zip(OUTPUTS, got, want):
        g = g.cpu()
        if cuda_kernels.on_host or name != "target_scores":
            assert torch.equal(g, w), name  # a GPU contracts into FMA: the scores' last bits may differ
        else:
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_alwa_matches_cpu_bitwise(cuda_kernels):
    cls, reg = loss_sequences("decaying", 300, seed=9)
    cpu = feed(ALWA(mode="alwa1", interval=7), cls, reg, device="cpu", dtype=torch.float32)
    with cuda_kernels.run():
        cuda = feed(ALWA(mode="alwa1", interval=7), cls, reg, device=cuda_kernels.device, dtype=torch.float32)
    for a, b in zip(cpu, cuda):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("statistic", ALWA_STATISTICS)
@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_alwa_pooled_update_matches_cpu_bitwise(cuda_kernels, mode, statistic):
    generator = torch.Generator().manual_seed(3)

    def window(values):  # count, shift (the first value), Σ(x - shift), Σ(x - shift)², Σ(x - shift)·t
        deviations = values - values[0]
        times = torch.arange(len(values), dtype=values.dtype)
        return [len(values), values[0].item(), deviations.sum().item(), (deviations ** 2).sum().item(),
                (deviations * times).sum().item()]

    # Three ranks' windows of 4, 7 and 2 values; classification's larger and noisier.
    windows = torch.tensor([[window(2.0 + torch.rand(k, dtype=torch.float64, generator=generator)),
                             window(0.5 + 0.1 * torch.rand(k, dtype=torch.float64, generator=generator))]
                            for k in (4, 7, 2)], dtype=torch.float64)

    def update(device):
        state = [torch.tensor([1.0, 1.0], dtype=torch.float64), torch.zeros(ALWA_WINDOW_SHAPE, dtype=torch.float64),
                 torch.tensor(0), torch.tensor(0)]
        state = [t.to(device) for t in state]
        torch.ops.alwa.alwa_pooled_update(windows.to(device), *state, mode, statistic)
        return [t.cpu() for t in state]

    want = update("cpu")
    got = on_kernels(cuda_kernels, update, cuda_kernels.device)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert got[2].item() == 1 and got[0][0].item() != 1.0  # the window was pooled and the rule fired


def test_bit_identical_repeats(cuda_kernels):
    # Smaller on the host, where a thread is a fiber: the orders of the sums are the same.
    n, m = (1 << 17, 600) if cuda_kernels.on_host else (1 << 20, 3000)
    device = cuda_kernels.device
    pred, target = box_pairs(n, dtype=torch.float32, seed=5, scale=100.0, device=device)
    pred.requires_grad_(True)
    weight = torch.rand(n, device=device)
    boxes1, boxes2 = box_pairs(m, dtype=torch.float32, seed=6, scale=100.0, device=device)
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    grad = torch.rand(m, m, device=device)
    first = None
    for _ in range(3):
        results = []
        with cuda_kernels.run():
            for kind, extra in VARIANTS:
                loss = alwa_ext.box_loss(pred, target, kind, weight=weight, **extra)
                results += [loss] + list(torch.autograd.grad(loss, pred))
            iou = alwa_ext.box_iou(boxes1, boxes2, "ciou")
            results += [iou] + list(torch.autograd.grad(iou, (boxes1, boxes2), grad))
        if first is None:
            first = results
        else:
            for a, b in zip(first, results):
                assert torch.equal(a, b)


# --------------------------------------------------------------------------- only on a GPU


@pytest.mark.cuda
@requires_cuda
def test_alwa_state_follows_the_losses_to_the_device():
    alwa = ALWA()
    alwa(torch.tensor(1.0, device="cuda"), torch.tensor(1.0, device="cuda"))
    assert alwa.weights.device.type == "cuda" and alwa.step.device.type == "cuda"
    assert alwa.weights.dtype == torch.float64




@pytest.mark.cuda
@requires_cuda
def test_box_ops_run_without_host_sync():
    pred, target = box_pairs(5000, dtype=torch.float32, scale=100.0, device="cuda")
    pred.requires_grad_(True)
    target.requires_grad_(True)
    deltas, anchors, delta_target = delta_pairs(5000, seed=1, dtype=torch.float32, device="cuda")
    deltas.requires_grad_(True)
    avg = torch.tensor(40.0, device="cuda")
    weight = torch.rand(5000, device="cuda")
    boxes1, boxes2 = box_pairs(300, dtype=torch.float32, scale=100.0, device="cuda")
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for kind, extra in VARIANTS:
            for kwargs in (dict(reduction="none"), dict(reduction="sum", weight=weight),
                           dict(reduction="mean", avg_factor=avg), dict(reduction="mean", avg_factor=12.0)):
                loss = alwa_ext.box_loss(pred, target, kind, **kwargs, **extra)
                torch.autograd.grad(loss.sum(), (pred, target))
            loss = alwa_ext.box_loss(deltas, delta_target, kind, box_format="deltas", anchors=anchors, avg_factor=avg, **extra)
            torch.autograd.grad(loss, deltas)
        for kind in ALPHA_IOU_KINDS:
            iou = alwa_ext.box_iou(boxes1, boxes2, kind)
            torch.autograd.grad(iou, (boxes1, boxes2), torch.ones_like(iou))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()


def _alwa_training_step(model, alwa, x, target_cls, target_reg):
    out = model(x)
    loss_cls = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], target_cls)
    loss_reg = torch.nn.functional.smooth_l1_loss(out[:, 1:], target_reg)
    weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)
    (weighted_cls + weighted_reg).backward()
    return weighted_cls.detach(), weighted_reg.detach()


def _alwa_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(64, 16, generator=g), (torch.rand(64, generator=g) > 0.5).float(), torch.randn(64, 4, generator=g))
        for _ in range(n)
    ]


@pytest.mark.cuda
@requires_cuda
def test_alwa_training_step_runs_without_host_sync():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 5).cuda()
    alwa = ALWA(mode="alwa2", interval=3).cuda()
    batches = [[t.cuda() for t in b] for b in _alwa_batches(10)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, tc, tr in batches:
            model.zero_grad(set_to_none=False)
            _alwa_training_step(model, alwa, x, tc, tr)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert alwa.step.item() == 10 and alwa.num_updates.item() == 3


# --------------------------------------------------------------------------- graphs, compile, determinism


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("kind", ("giou", "ciou", "siou", "smooth_l1"))
def test_box_ops_cuda_graph_capture_and_replay(kind):
    n = 70_000  # several blocks: the finishing block is captured too
    pred, target = box_pairs(n, dtype=torch.float32, seed=1, scale=100.0, device="cuda")
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
        new_pred, new_target = box_pairs(n, dtype=torch.float32, seed=seed, scale=100.0, device="cuda")
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


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("update", ["paper", "stable"])
def test_alwa_cuda_graph_replays_advance_statistics_and_update_on_time(update):
    torch.manual_seed(0)
    batches = _alwa_batches(23, seed=1)
    interval = 4

    # Eager run.
    model = torch.nn.Linear(16, 5).cuda()
    initial = copy.deepcopy(model.state_dict())
    alwa = ALWA(mode="alwa1", interval=interval, update=update).cuda()
    eager = []
    for x, tc, tr in batches:
        model.zero_grad(set_to_none=False)
        out = _alwa_training_step(model, alwa, x.cuda(), tc.cuda(), tr.cuda())
        eager.append((torch.stack(out).cpu(), alwa.weights.cpu().clone()))

    # Captured: one warm-up iteration on a side stream, then capture one iteration and replay.
    model.load_state_dict(initial)
    graph_alwa = ALWA(mode="alwa1", interval=interval, update=update).cuda()
    static = [t.cuda() for t in batches[0]]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        model.zero_grad(set_to_none=False)
        first = _alwa_training_step(model, graph_alwa, *static)
    torch.cuda.current_stream().wait_stream(side)
    replayed = [(torch.stack(first).cpu(), graph_alwa.weights.cpu().clone())]
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        static_out = _alwa_training_step(model, graph_alwa, *static)
    for x, tc, tr in batches[1:]:
        for dst, src in zip(static, (x, tc, tr)):
            dst.copy_(src)
        model.zero_grad(set_to_none=False)
        graph.replay()
        replayed.append((torch.stack(static_out).cpu(), graph_alwa.weights.cpu().clone()))
    torch.cuda.synchronize()
    # Capture itself does not execute: the state advanced once per eager call and replay only.
    assert graph_alwa.step.item() == len(batches)
    assert graph_alwa.num_updates.item() == len(batches) // interval
    for (eager_out, eager_weights), (graph_out, graph_weights) in zip(eager, replayed):
        torch.testing.assert_close(graph_out, eager_out, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(graph_weights, eager_weights, rtol=1e-9, atol=0)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("kind", ("giou", "ciou", "l1"))
def test_compile_reduce_overhead(kind):
    torch._dynamo.reset()

    def step(pred, target, avg):
        return alwa_ext.box_loss(pred, target, kind, avg_factor=avg)

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    avg = torch.tensor(50.0, device="cuda")
    for seed in range(4):  # cudagraph trees record on a later call, then replay
        pred, target = box_pairs(4096, dtype=torch.float32, seed=seed, scale=100.0, device="cuda")
        p1 = pred.clone().requires_grad_(True)
        loss = compiled(p1, target, avg)
        loss.backward()
        p2 = pred.clone().requires_grad_(True)
        want = step(p2, target, avg)
        want.backward()
        torch.testing.assert_close(loss.detach().clone(), want.detach(), rtol=0, atol=0)
        torch.testing.assert_close(p1.grad, p2.grad, rtol=0, atol=0)


@pytest.mark.cuda
@requires_cuda
def test_current_stream_and_device_guard():
    pred, target = box_pairs(3000, dtype=torch.float32, scale=100.0, device="cuda")
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


@pytest.mark.cuda
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
    small_pred, small_target = box_pairs(period, dtype=torch.float16, seed=9, scale=100.0, device="cuda")
    pred = small_pred.repeat(n // period, 1)
    target = small_target.repeat(n // period, 1)
    assert pred.numel() > 2**31
    loss, grad_pred, _ = box_loss_op(pred, target, "giou", reduction="none", grad_pred=True)
    want_loss, want_grad, _ = box_loss_op(small_pred, small_target, "giou", reduction="none", grad_pred=True)
    # The last period sits past element 2^31: it must match the small call exactly.
    assert torch.equal(loss[-period:], want_loss)
    assert torch.equal(grad_pred[-period:], want_grad)
    assert torch.equal(loss[:period], want_loss)
    del loss, grad_pred
    mean = alwa_ext.box_loss(pred, target, "giou", reduction="mean")
    torch.testing.assert_close(mean.float().cpu(), want_loss.float().mean().cpu(), rtol=1e-2, atol=0)
