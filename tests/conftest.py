"""Fixtures of the whole suite. Shared helpers live in tests/helpers/ (``from helpers.boxes
import ...``): this file only makes tests/ importable (pytest puts a rootdir conftest's folder
on sys.path) and defines the fixtures.
"""
from __future__ import annotations

import pytest

import alwa_ext  # noqa: F401  (registers torch.ops.alwa before any test collects)
from helpers.devices import CUDA_KERNELS, DEVICES, running_on


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs the test once per device: ``[cpu]``; ``[cuda_host]``, the CUDA kernels executed on
    the host (the test sees "cpu"); ``[cuda]``, skipped without a GPU."""
    if request.param == "cuda_host" and request.node.get_closest_marker("registrations") is not None:
        pytest.skip("checks torch.ops.alwa's own registrations (fake kernels, autograd, compile), "
                    "which the host execution's library does not replace")
    with running_on(request.param) as device:
        yield device


@pytest.fixture(params=CUDA_KERNELS)
def cuda_kernels(request):
    """The CUDA kernels, executed on the host (both builds) and on a GPU where there is one."""
    return request.param
