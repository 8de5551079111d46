"""Fixtures of the whole suite. Shared helpers live in tests/helpers/ (``from helpers.boxes
import ...``): this file only makes tests/ importable (pytest puts a rootdir conftest's folder
on sys.path) and defines the fixtures.
"""
from __future__ import annotations

import pytest

import alwa_ext  # noqa: F401  (registers torch.ops.alwa before any test collects)
from helpers.devices import DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs the test once per device: ``[cpu]`` always, ``[cuda]`` skipped without a GPU."""
    return request.param
