"""The devices every test body runs on: the CPU always, the CUDA kernels executed on the host
(tests/cuda_host/) wherever the CUDA toolkit's headers are, and CUDA where a device is visible.

``DEVICES`` feeds the ``device`` fixture of tests/conftest.py, so a test that takes ``device``
collects ``[cpu]``, ``[cuda_host]`` and ``[cuda]`` variants everywhere. The ``[cuda_host]`` one
gets "cpu" as its device and runs inside ``on_host_cuda()``: its tensors are CPU tensors, and the
op calls run the CUDA launchers and kernels on the host. It carries the ``cuda_host`` marker; the
CUDA one the ``cuda`` marker, and it skips without a GPU.

``CUDA_KERNELS`` feeds the ``cuda_kernels`` fixture: the CUDA kernels themselves, on the host
(both builds) and on a GPU, for the tests that compare them with the CPU kernels.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch

from .cuda_host import LIBRARIES, on_host_cuda, requires_cuda_host

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
HOST_MARKS = (pytest.mark.cuda_host, requires_cuda_host)
DEVICES = ["cpu", pytest.param("cuda_host", marks=HOST_MARKS), pytest.param("cuda", marks=(pytest.mark.cuda, requires_cuda))]


@dataclass(frozen=True)
class CudaKernels:
    """Where the CUDA kernels run: ``device`` is where their inputs go, ``run()`` the block in
    which torch.ops.alwa calls reach them (the host build's library, or the GPU)."""

    name: str
    device: str
    library: str | None = None

    @property
    def on_host(self) -> bool:
        return self.library is not None

    def run(self):
        return on_host_cuda(self.library) if self.on_host else contextlib.nullcontext()


CUDA_KERNELS = [pytest.param(CudaKernels(name, "cpu", name), marks=HOST_MARKS, id=name) for name in LIBRARIES] + [
    pytest.param(CudaKernels("gpu", "cuda"), marks=(pytest.mark.cuda, requires_cuda), id="gpu")]


@contextlib.contextmanager
def running_on(device: str):
    """A ``DEVICES`` entry as the torch device a test puts its tensors on, inside the block where
    its op calls reach that device's kernels (``on_host_cuda()`` for "cuda_host")."""
    if device == "cuda_host":
        with on_host_cuda():
            yield "cpu"
    else:
        yield device


def to_device(value, device):
    """A tensor moved to ``device`` (anything else as it is): for building kwargs on the fly."""
    return value.to(device) if isinstance(value, torch.Tensor) else value
