"""What the adapters share: checking a loss configuration once, when it is set up."""
from __future__ import annotations

import importlib
from typing import Iterable, Mapping

import torch

from ..functional import box_loss
from ..kinds import IOU_KINDS, LOSS_KINDS

# The box_loss options an adapter passes through; the geometry (box format, anchors, delta
# coding) is the framework's own and set by the adapter. beta is SmoothL1's alone.
LOSS_OPTIONS = ("eps", "beta", "alpha", "focal_gamma")
IOU_LOSS_OPTIONS = ("eps", "alpha", "focal_gamma")


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

    ``kinds`` are the kinds the adapter takes; when they are IoU kinds only, ``beta`` (SmoothL1's)
    is not an option either. Unknown option names raise TypeError (as an unexpected keyword argument would); bad values
    raise the ValueError of :func:`alwa_ext.box_loss`, found by a call on zero boxes (no device
    work, and the same rules as the training calls).
    """
    kinds = tuple(kinds)
    if loss not in kinds:
        raise ValueError(f"loss: expected one of {', '.join(map(repr, kinds))}, got {loss!r}")
    allowed = LOSS_OPTIONS if set(kinds) - set(IOU_KINDS) else IOU_LOSS_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the loss options are {', '.join(allowed)}")
    options = dict(options)
    empty = torch.empty((0, 4))
    box_loss(empty, empty, loss, reduction="sum", **options)
    return options
