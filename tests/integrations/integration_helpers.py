"""What the framework-adapter tests share. (Not a conftest.py: tests/ has one, which the main
suite imports as ``conftest``; a second would shadow it.)"""
from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """The machine is shared; one thread keeps the tests fast and deterministic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def to_meta(value):
    """``value`` (a tensor, or lists / tuples / dicts of them) on the meta device.

    Meta tensors have shapes and dtypes but no data, so any host read of a value raises:
    ``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``nonzero``, boolean-mask indexing,
    ``torch.where(cond)``. Code that runs on them reads nothing back: no host sync.
    """
    if isinstance(value, torch.Tensor):
        out = value.detach().to("meta")
        return out.requires_grad_() if value.requires_grad else out
    if isinstance(value, dict):
        return {key: to_meta(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_meta(item) for item in value)
    return value


def alwa2_lambda(cls_recorded, reg_recorded, current=1.0):
    """λcls after one ALWA_2 window: an independent transcription of the published rule.

    ``*_recorded`` are the values ALWA records ("paper": the weighted losses). The window's
    statistic is the sample std (ddof 1); the update fires when cls > reg and sets
    λcls = 1 - (cls - reg) / cls, whatever λcls was; otherwise λcls stays ``current``.
    """

    def std(values):
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    cls, reg = std(cls_recorded), std(reg_recorded)
    return 1 - (cls - reg) / cls if cls > reg else current
