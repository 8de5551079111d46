"""Argument checks shared by the public wrappers.

They read only what the host knows (types, shapes, dtypes, devices, Python values), never a
tensor's contents, so they cost no device sync and are traced away by torch.compile.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_choice(name: str, value, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def check_boxes(name: str, boxes) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: expected boxes of shape (..., 4), got shape {tuple(boxes.shape)}")
    if boxes.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32, float64, float16 or bfloat16 boxes, got {boxes.dtype}")


def check_same(name: str, tensor: torch.Tensor, ref_name: str, ref: torch.Tensor, *, shape=True) -> None:
    if shape and tensor.shape != ref.shape:
        raise ValueError(f"{name}: expected the shape of {ref_name} {tuple(ref.shape)}, got {tuple(tensor.shape)}")
    if tensor.dtype != ref.dtype:
        raise ValueError(f"{name}: expected the dtype of {ref_name} ({ref.dtype}), got {tensor.dtype}")
    check_device(name, tensor, ref_name, ref)


def check_device(name: str, tensor: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if tensor.device != ref.device:
        raise ValueError(f"{name}: expected the device of {ref_name} ({ref.device}), got {tensor.device}")


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
