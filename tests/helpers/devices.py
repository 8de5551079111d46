"""The devices every test body runs on: the CPU always, CUDA where a device is visible.

``DEVICES`` feeds the ``device`` fixture of tests/conftest.py, so a test that takes ``device``
collects a ``[cpu]`` and a ``[cuda]`` variant everywhere; the CUDA one carries the ``cuda``
marker (``-m "not cuda"`` deselects it) and skips without a GPU.
"""
from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=(pytest.mark.cuda, requires_cuda))]


def to_device(value, device):
    """A tensor moved to ``device`` (anything else as it is): for building kwargs on the fly."""
    return value.to(device) if isinstance(value, torch.Tensor) else value
