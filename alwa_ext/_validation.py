"""Argument checks shared by the public wrappers.

They read only what the host knows (types, shapes, dtypes, devices, Python values), never a
tensor's contents, so they cost no device sync and are traced away by torch.compile.
"""
from __future__ import annotations

import math
from typing import Iterable


def check_choice(name: str, value, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def is_finite_number(value) -> bool:
    # Comparisons rather than math.isfinite: under torch.compile(dynamic=True) a float argument
    # may be symbolic, and comparisons on it are traceable (NaN fails them).
    return isinstance(value, (int, float)) and -math.inf < value < math.inf


def check_eps(eps) -> None:
    check_nonnegative("eps", eps)


def check_nonnegative(name: str, value) -> None:
    if not is_finite_number(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")


def check_positive(name: str, value) -> None:
    if not is_finite_number(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
