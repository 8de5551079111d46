"""What only the host execution can show of the CUDA launchers and kernels: the grids they launch
(one block, several with a partial last one, capped below the work so grid-stride loops go round
again; on an H100's 132 multiprocessors and on a one-multiprocessor device), results that do not
depend on the order of the threads nor on the grid beyond the summation order, per-element results
bit-identical to the CPU kernels', the device-side label check, and the launch plans' index math
past 2^31 elements.

Agreement with the CPU kernels over the kinds, dtypes, formats and options is in
tests/test_cuda_kernels.py, with the eager references in the ``[cuda_host]`` variants of the
reference tests.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess

import pytest
import torch

import alwa_ext
from alwa_ext.kinds import ALPHA_IOU_KINDS, LOSS_KINDS
from helpers.boxes import DTYPES, box_pairs
from helpers.cuda_host import (LIBRARIES, LIBRARY, build, device_properties, kernel_family, on_host_cuda, schedule,
                               take_launches, requires_cuda_host)
from helpers.variants import VARIANTS, variant_id

pytestmark = [pytest.mark.cuda_host, requires_cuda_host]

THREADS = 256  # kThreadsPerBlock
IOU_TILE_ROWS = 64  # kIouTileRows
H100 = (132, 2048)  # the emulated device's default: 132 x 8 = 1056 resident blocks
DEVICES = {"h100": H100, "one_sm": (1, 256), "three_sms": (3, 512)}


def resident(device):
    multiprocessors, threads = DEVICES[device]
    return multiprocessors * (threads // THREADS)


@contextlib.contextmanager
def on(device, library=LIBRARY):
    """The block on the host execution of `library`, on the emulated `device`, with the launch
    log emptied first."""
    with device_properties(*DEVICES[device], library=library), on_host_cuda(library):
        take_launches(library)
        yield


@contextlib.contextmanager
def scalar_cpu_kernels():
    # The CPU kernels' SIMD paths round some functions differently from libm: the scalar path
    # evaluates the same C++ as the CUDA kernels.
    previous = torch.ops.alwa.set_cpu_isa("scalar")
    try:
        yield
    finally:
        torch.ops.alwa.set_cpu_isa(previous)


def grads(out, inputs):
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view(out.shape)
    return torch.autograd.grad(out, inputs, upstream)


def box_loss_and_grads(pred, target, kind, **kwargs):
    pred = pred.detach().clone().requires_grad_(True)
    target = target.detach().clone().requires_grad_(True)
    out = alwa_ext.box_loss(pred, target, kind, **kwargs)
    return (out.detach(),) + grads(out, (pred, target))


# --------------------------------------------------------------------------- grids


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("n", [1, 255, 257, 1000, 70_000, 300_001])
def test_box_loss_grid(device, n):
    pred, target = box_pairs(n, seed=n)
    blocks = min(math.ceil(n / THREADS), resident(device))
    for reduction in ("none", "sum"):
        with on(device):
            got = box_loss_and_grads(pred, target, "giou", reduction=reduction)
            launches = take_launches()
        want = box_loss_and_grads(pred, target, "giou", reduction=reduction)
        kernels = [kernel_family(name) for name, _, _ in launches]
        finishing = reduction != "none" and blocks > 1
        assert kernels == ["box_loss_kernel"] + ["reduce_block_sums_kernel"] * finishing
        assert launches[0][1:] == ((blocks, 1, 1), (THREADS, 1, 1))
        if finishing:
            assert launches[1][1:] == ((1, 1, 1), (THREADS, 1, 1))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    # Where the grid is capped below the boxes, a thread's loop takes several of them.
    assert (blocks * THREADS < n) == (n > resident(device) * THREADS)


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("rows, classes", [(1, 1), (7, 3), (613, 21), (13_000, 80)])
def test_focal_loss_grid(device, rows, classes):
    generator = torch.Generator().manual_seed(rows)
    logits = torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes + 1, (rows,), generator=generator)
    blocks = min(math.ceil(rows * classes / THREADS), resident(device))

    def run():
        x = logits.clone().requires_grad_(True)
        out = alwa_ext.sigmoid_focal_loss(x, labels, reduction="sum")
        return out.detach(), torch.autograd.grad(out, x)[0]

    with on(device):
        got = run()
        launches = take_launches()
    want = run()
    assert [kernel_family(k) for k, _, _ in launches] == ["focal_loss_kernel"] + ["reduce_block_sums_kernel"] * (blocks > 1)
    assert launches[0][1] == (blocks, 1, 1)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m, n", [(1, 1), (64, 256), (65, 257), (3, 5000), (1500, 40)])
def test_box_iou_grid_and_backward_chunks(m, n):
    boxes1, _ = box_pairs(m, seed=m, scale=100.0)
    boxes2, _ = box_pairs(n, seed=n + 1, scale=100.0)
    grad = torch.rand(m, n, generator=torch.Generator().manual_seed(m + n), dtype=torch.float64)

    def run():
        b1, b2 = boxes1.clone().requires_grad_(True), boxes2.clone().requires_grad_(True)
        out = alwa_ext.box_iou(b1, b2, "ciou")
        return (out.detach(),) + torch.autograd.grad(out, (b1, b2), grad)

    want = run()
    chunks = {}
    for device in DEVICES:
        with on(device):
            got = run()
            launches = take_launches()
        for g, w in zip(got, want):  # the sums over pairs, chunked or not, in float64
            torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-12)
        names = [kernel_family(k) for k, _, _ in launches]
        assert names[0] == "box_iou_kernel"
        assert launches[0][1] == (math.ceil(n / THREADS), math.ceil(m / IOU_TILE_ROWS), 1)
        for owner in ("box_iou_grad_boxes1_kernel", "box_iou_grad_boxes2_kernel"):
            i = names.index(owner)
            grid = launches[i][1]
            chunks[device, owner] = grid[1]
            # Several chunks leave partial sums, which one more kernel adds up in chunk order.
            assert (names[i + 1: i + 2] == ["box_iou_grad_finish_kernel"]) == (grid[1] > 1)
    # One multiprocessor is busy with one chunk; an H100 splits the long sums of the few owners.
    assert chunks["one_sm", "box_iou_grad_boxes1_kernel"] == 1
    if (m, n) == (3, 5000):
        assert chunks["h100", "box_iou_grad_boxes1_kernel"] > 1
    if (m, n) == (1500, 40):
        assert chunks["h100", "box_iou_grad_boxes2_kernel"] > 1


def test_empty_inputs_launch_nothing():
    empty = torch.zeros(0, 4, dtype=torch.float64)
    with on("h100"):
        assert alwa_ext.box_loss(empty, empty, "ciou").item() == 0.0
        assert alwa_ext.box_loss(empty, empty, "ciou", reduction="none").shape == (0,)
        assert alwa_ext.box_iou(empty, empty[:0], "giou").shape == (0, 0)
        assert alwa_ext.sigmoid_focal_loss(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).item() == 0.0
        assert take_launches() == []


def test_alwa_is_one_thread_per_iteration():
    alwa = alwa_ext.ALWA(mode="alwa2", interval=3)
    with on("h100"):
        for _ in range(4):
            alwa(torch.tensor(2.0), torch.tensor(1.0))
        launches = take_launches()
    assert [(kernel_family(k), grid, block) for k, grid, block in launches] == [
        ("alwa_step_kernel", (1, 1, 1), (1, 1, 1))] * 4
    assert alwa.num_updates.item() == 1


# --------------------------------------------------------------------------- thread order


@pytest.mark.parametrize("library", LIBRARIES)
def test_results_do_not_depend_on_the_thread_order(library):
    pred, target = box_pairs(5000, dtype=torch.float32, seed=2, scale=100.0)
    boxes1, boxes2 = box_pairs(300, dtype=torch.float32, seed=3, scale=100.0)
    grad = torch.rand(300, 300, generator=torch.Generator().manual_seed(4))
    logits = torch.randn(900, 20, generator=torch.Generator().manual_seed(5))
    labels = torch.randint(0, 21, (900,), generator=torch.Generator().manual_seed(6))

    def run():
        out = []
        for kind, extra in VARIANTS:
            out += box_loss_and_grads(pred, target, kind, reduction="sum", **extra)
        b1, b2 = boxes1.clone().requires_grad_(True), boxes2.clone().requires_grad_(True)
        iou = alwa_ext.box_iou(b1, b2, "giou")
        out += [iou.detach(), *torch.autograd.grad(iou, (b1, b2), grad)]
        x = logits.clone().requires_grad_(True)
        focal = alwa_ext.sigmoid_focal_loss(x, labels)
        return out + [focal.detach(), *torch.autograd.grad(focal, x)]

    with on("three_sms", library):
        forward = run()
        with schedule("reverse", library):
            reverse = run()
    for a, b in zip(forward, reverse):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- bit-identical elements


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_per_element_results_are_the_cpu_kernels_bits(variant, dtype):
    """Each element's loss and gradient is the same C++ on both sides (the math headers), in
    the same order: bit for bit, the reductions' different summation orders aside. (A GPU
    contracts to FMA, so there the last bits differ.)"""
    kind, extra = variant
    half = dtype in (torch.float16, torch.bfloat16)
    pred, target = box_pairs(777, dtype=dtype, seed=11, scale=10.0 if half else 100.0)
    weight = torch.rand(777, 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    for reduction, options in (("none", {}), ("none", dict(weight=weight)), ("mean", {})):
        with on("h100"):
            got = box_loss_and_grads(pred, target, kind, reduction=reduction, **extra, **options)
        with scalar_cpu_kernels():
            want = box_loss_and_grads(pred, target, kind, reduction=reduction, **extra, **options)
        compared = got if reduction == "none" else got[1:]  # a reduced loss is a sum
        for g, w in zip(compared, want if reduction == "none" else want[1:]):
            assert torch.equal(g, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_box_iou_values_are_the_cpu_kernels_bits(kind, dtype):
    boxes1, _ = box_pairs(70, dtype=dtype, seed=1, scale=100.0)
    boxes2, _ = box_pairs(300, dtype=dtype, seed=2, scale=100.0)
    with on("h100"):
        got = alwa_ext.box_iou(boxes1, boxes2, kind)
    with scalar_cpu_kernels():
        want = alwa_ext.box_iou(boxes1, boxes2, kind)
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_focal_elements_are_the_cpu_kernels_bits(dtype, gamma):
    generator = torch.Generator().manual_seed(9)
    logits = (torch.randn(300, 11, generator=generator) * 5).to(dtype)
    for targets in (torch.randint(0, 12, (300,), generator=generator), torch.rand(300, 11, generator=generator).to(dtype)):
        def run():
            x = logits.clone().requires_grad_(True)
            out = alwa_ext.sigmoid_focal_loss(x, targets, gamma=gamma, reduction="none")
            return out.detach(), torch.autograd.grad(out, x, torch.ones_like(out))[0]

        with on("h100"):
            got = run()
        with scalar_cpu_kernels():
            want = run()
        for g, w in zip(got, want):
            assert torch.equal(g, w)


# --------------------------------------------------------------------------- device-side checks


def test_a_class_index_out_of_range_is_a_device_side_assert():
    logits = torch.randn(10, 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 5, 0, 1])  # 5 > num_classes
    with on("h100"), pytest.raises(RuntimeError, match="device-side assert triggered.*class index outside"):
        alwa_ext.sigmoid_focal_loss(logits, labels)
    # nvcc's host pass has no device code: the check is the device build's alone.
    with on("h100", "alwa_cuda_host_pass"):
        alwa_ext.sigmoid_focal_loss(logits, labels)


def test_kinds_are_all_launched():
    pred, target = box_pairs(10, seed=1)
    with on("h100"):
        for kind in LOSS_KINDS:
            alwa_ext.box_loss(pred, target, kind)
        names = [name for name, _, _ in take_launches()]
    assert len(set(names)) == len(LOSS_KINDS)  # one box_loss_kernel instantiation a kind


# --------------------------------------------------------------------------- launch plans


def test_index_math_past_int32(tmp_path):
    """The launch plans' grid and index math for more than 2^31 elements, as functions."""
    binary = tmp_path / "index_math_test"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(
        ["c++", "-std=c++17", "-Wall", "-Werror", "-I", os.path.join(root, "csrc"), "-I", os.path.join(root, "csrc", "include"),
         "-I", build.cuda_include_dir(), "-o", str(binary), os.path.join(root, "tests", "cuda_host", "index_math_test.cpp")],
        check=True, capture_output=True, text=True,
    )
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "index math ok" in result.stdout
