"""Which SIMD path the CPU kernels take, and the memory they keep.

The build assumes nothing about the CPU: each path (``"scalar"``, ``"avx2"``, ``"avx512"``) is
compiled for its own instruction set and the widest one this CPU can run is chosen when the
library loads, unless the environment variable ``ALWA_CPU_ISA`` names another. float32
box_loss calls go through the SIMD path; other dtypes through the scalar one. All paths give
the same results to float32 rounding, and each is deterministic run to run.

sigmoid_focal_loss's CPU kernel keeps the memory of the gradient it last returned (as large as
the logits) and writes the next one there once nothing else holds it: fresh memory of that size
costs more in page faults than the loss itself. :func:`empty_cache` lets it go.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, List

import torch

from . import _C  # noqa: F401  (registers torch.ops.alwa)


def isa() -> str:
    """The path in use."""
    return torch.ops.alwa.cpu_isa()


def available_isas() -> List[str]:
    """The paths this machine and build can take, narrowest first (``"scalar"`` always)."""
    return list(torch.ops.alwa.cpu_isas())


def set_isa(name: str) -> str:
    """Use path ``name`` (or ``"auto"``: the widest available) from now on; returns the previous
    one. Raises ValueError for a path this machine cannot take."""
    return torch.ops.alwa.set_cpu_isa(name)


def empty_cache() -> None:
    """Lets go of the CPU memory the kernels keep for reuse (tensors still using it keep it)."""
    torch.ops.alwa.cpu_empty_cache()


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[str]:
    """``with use_isa("scalar"): ...`` runs the block on that path, then restores the previous."""
    previous = set_isa(name)
    try:
        yield name
    finally:
        set_isa(previous)


def _warn_about_the_environment() -> None:
    requested = os.environ.get("ALWA_CPU_ISA", "")
    if requested not in ("", "auto") and requested != isa():
        warnings.warn(
            f"ALWA_CPU_ISA={requested}: not one of auto, {', '.join(available_isas())} (the paths this CPU and "
            f"build can take); using {isa()}",
            stacklevel=2,
        )


_warn_about_the_environment()
