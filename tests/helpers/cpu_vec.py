"""The CPU SIMD paths' atan2, through the test-only library tests/cpu_vec/ builds (the product's
build registers no test hook)."""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

_BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cpu_vec", "build.py")


@functools.cache
def _library() -> str:
    spec = importlib.util.spec_from_file_location("cpu_vec_build", _BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = module.load()
    torch.ops.load_library(path)
    return path


def vector_atan2(y: torch.Tensor, x: torch.Tensor, isa: str) -> torch.Tensor:
    """atan2 of float32 tensors by the ``isa`` path's vector code (csrc/cpu/vec/atan2.h)."""
    _library()
    return torch.ops.alwa_vec_test.atan2(y, x, isa)
