"""What the adapters share: checking a loss configuration once, when it is set up."""
from __future__ import annotations

import importlib
from typing import Iterable, Mapping

import torch

from ..functional import box_loss
from ..kinds import LOSS_KINDS

# The box_loss options an adapter passes through; the geometry (box format, anchors, delta
# coding) is the framework's own and set by the adapter.
LOSS_OPTIONS = ("eps", "beta", "alpha", "focal_gamma")


def import_framework(module: str, adapter: str, install: str):
    """Imports ``module`` or raises an ImportError that says which adapter needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{adapter} needs {module}, which is not importable ({error}); install it with `{install}`"
        ) from error


def check_loss_config(loss: str, options: Mapping[str, object], kinds: Iterable[str] = LOSS_KINDS) -> dict:
    """Validates a loss kind and its options and returns the options as a dict.

    Unknown option names raise TypeError (as an unexpected keyword argument would); bad values
    raise the ValueError of :func:`alwa_ext.box_loss`, found by a call on zero boxes (no device
    work, and the same rules as the training calls).
    """
    kinds = tuple(kinds)
    if loss not in kinds:
        raise ValueError(f"loss: expected one of {', '.join(map(repr, kinds))}, got {loss!r}")
    unknown = sorted(set(options) - set(LOSS_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the loss options are {', '.join(LOSS_OPTIONS)}")
    options = dict(options)
    empty = torch.empty((0, 4))
    box_loss(empty, empty, loss, reduction="sum", **options)
    return options
