"""The CUDA kernels executed on the host (tests/cuda_host/): loading the op libraries, running a
block of code on them, and the emulated device's controls.

``on_host_cuda()`` routes every call of a torch.ops.alwa kernel op made inside it (by the public
wrappers, their autograd, nn modules, ALWA) to the same op of the host build, whose CUDA
launchers and kernels then run on the host over CPU tensors. Everything else runs as usual, so
eager references and torch's own ops inside the block are untouched; a comparison with the CPU
kernels belongs outside it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

_BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cuda_host", "build.py")
_spec = importlib.util.spec_from_file_location("cuda_host_build", _BUILD)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

AVAILABLE, REASON = build.available()
requires_cuda_host = pytest.mark.skipif(not AVAILABLE, reason=REASON or "host execution unavailable")
# The build a GPU runs (__CUDA_ARCH__ defined) and nvcc's host pass.
LIBRARY = "alwa_cuda_host"
LIBRARIES = tuple(build.VARIANTS)

# The ops of csrc/kernel_schemas.h: what every backend implements.
KERNEL_OPS = frozenset({
    "box_loss", "box_loss_with_grad", "box_loss_backward", "box_iou", "box_iou_backward",
    "sigmoid_focal_loss", "sigmoid_focal_loss_with_grad", "distribution_focal_loss",
    "distribution_focal_loss_with_grad", "distribution_expectation",
    "distribution_expectation_backward", "task_aligned_assign", "alwa_step", "alwa_pooled_update",
})


def ops(library: str = LIBRARY):
    """torch.ops.<library>, built and loaded on first use."""
    build.load(library)
    return getattr(torch.ops, library)


class _OnHostCuda(TorchDispatchMode):
    def __init__(self, library):
        super().__init__()
        self.library = ops(library)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        namespace, _, name = func._schema.name.partition("::")
        if namespace == "alwa" and name in KERNEL_OPS:
            func = getattr(self.library, name).default
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def on_host_cuda(library: str = LIBRARY):
    """Runs torch.ops.alwa's kernel ops inside the block on the host execution of the CUDA
    kernels, with every fresh tensor filled with NaN (integers: their maximum) so that an output
    element a kernel leaves unwritten cannot pass for a value."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        with _OnHostCuda(library):
            yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@contextlib.contextmanager
def device_properties(multiprocessors: int, max_threads_per_multiprocessor: int = 2048, library: str = LIBRARY):
    """The emulated device's size (what the launchers cap their grids by) inside the block."""
    previous = ops(library).set_device_properties(multiprocessors, max_threads_per_multiprocessor)
    try:
        yield
    finally:
        ops(library).set_device_properties(*previous)


@contextlib.contextmanager
def schedule(order: str, library: str = LIBRARY):
    """The order the threads of a block run in between waits ("forward" or "reverse")."""
    previous = ops(library).set_schedule(order)
    try:
        yield
    finally:
        ops(library).set_schedule(previous)


def take_launches(library: str = LIBRARY):
    """The launches since the last call: (kernel name, grid (x, y, z), block (x, y, z))."""
    kernels, numbers = ops(library).take_launches()
    return [(name, tuple(numbers[6 * i: 6 * i + 3]), tuple(numbers[6 * i + 3: 6 * i + 6]))
            for i, name in enumerate(kernels)]


def kernel_family(name: str) -> str:
    """``box_loss_kernel`` of ``void alwa::cuda::box_loss_kernel<...>(...)``."""
    return name.split("<", 1)[0].split("(", 1)[0].rsplit("::", 1)[-1]
