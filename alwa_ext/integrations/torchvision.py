"""torchvision detection models with alwa_ext's fused box losses and ALWA.

- :func:`fuse_box_loss` swaps the head of a ``RetinaNet`` (its regression head) or an ``FCOS``
  (its head) for a subclass whose ``compute_loss`` computes the box-regression loss with
  :func:`alwa_ext.box_loss`, any kind, with torchvision's box coder and normalisation. The
  subclasses add no parameters or buffers, so state dicts load both ways.
- :func:`fuse_focal_loss` does the same for the classification loss: a RetinaNet's
  classification head (or an FCOS head) computes its sigmoid focal loss with
  :func:`alwa_ext.sigmoid_focal_loss` on class indices (no one-hot tensor), one call per batch.
- :func:`weight_losses` applies :class:`alwa_ext.ALWA` to the loss dict a torchvision detector
  returns in training mode.

Importing this module imports torchvision.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

from torch import Tensor, nn

from ..weighting import ALWA
from ._common import import_framework

import_framework("torchvision", "alwa_ext.integrations.torchvision", "pip install torchvision")

from torchvision.models.detection import FCOS, RetinaNet  # noqa: E402

from ._torchvision_heads import (  # noqa: E402
    FusedFCOSHead,
    FusedRetinaNetClassificationHead,
    FusedRetinaNetRegressionHead,
    _focal_options,
)

# The (classification, regression) pairs weight_losses looks for, in this order: RetinaNet and
# FCOS heads; the RPN of Faster / Mask / Keypoint R-CNN (where the paper applies ALWA).
DENSE_HEAD_KEYS = ("classification", "bbox_regression")
RPN_KEYS = ("loss_objectness", "loss_rpn_box_reg")
LOSS_KEY_PRESETS = (DENSE_HEAD_KEYS, RPN_KEYS)


# --------------------------------------------------------------------------- public API


def fuse_box_loss(model: nn.Module, loss: str = "giou", **loss_options) -> nn.Module:
    """Makes a torchvision ``RetinaNet`` or ``FCOS`` compute its box loss with alwa_ext.

    Args:
        model: a ``torchvision.models.detection.RetinaNet`` (any backbone) or ``FCOS``; changed
            in place and returned. Its regression head (RetinaNet) or head (FCOS) is replaced by
            :class:`FusedRetinaNetRegressionHead` / :class:`FusedFCOSHead` holding the same
            parameters (an optimizer built before keeps working) under the same names (state
            dicts load both ways). Calling it again changes the loss.
        loss: any of ``alwa_ext.kinds.LOSS_KINDS`` for RetinaNet (``l1``/``smooth_l1`` compare
            the deltas with the box coder's encoded targets, the IoU kinds the decoded boxes
            with the gt boxes); an IoU kind for FCOS.
        loss_options: ``eps``, ``beta`` (smooth_l1), ``alpha`` (Alpha-IoU), ``focal_gamma``
            (Focal-EIoU), as in :func:`alwa_ext.box_loss`.

    For torchvision's own kinds the loss dict equals torchvision's, values and gradients.
    """
    if isinstance(model, RetinaNet):
        model.head.regression_head = FusedRetinaNetRegressionHead.from_head(model.head.regression_head, loss, **loss_options)
    elif isinstance(model, FCOS):
        model.head = FusedFCOSHead.from_head(model.head, loss, **loss_options)
    else:
        raise TypeError(f"model: expected a torchvision RetinaNet or FCOS, got {type(model).__name__}")
    return model


def fuse_focal_loss(model: nn.Module, *, alpha: float = 0.25, gamma: float = 2.0) -> nn.Module:
    """Makes a torchvision ``RetinaNet`` or ``FCOS`` compute its classification loss with
    :func:`alwa_ext.sigmoid_focal_loss` (class indices, one fused call per batch).

    RetinaNet: its classification head is replaced by :class:`FusedRetinaNetClassificationHead`
    holding the same parameters under the same names (state dicts load both ways). FCOS: its
    head becomes a :class:`FusedFCOSHead` (as :func:`fuse_box_loss` makes it, GIoU unless it was
    fused already) that computes the focal loss fused. With alpha 0.25 and gamma 2 (torchvision's
    values) the loss dict equals torchvision's. Combine with :func:`fuse_box_loss` for the whole
    loss stage; the order does not matter.
    """
    options = _focal_options(alpha, gamma)
    if isinstance(model, RetinaNet):
        head = model.head.classification_head
        model.head.classification_head = FusedRetinaNetClassificationHead.from_head(head, **options)
    elif isinstance(model, FCOS):
        if not isinstance(model.head, FusedFCOSHead):
            model.head = FusedFCOSHead.from_head(model.head, "giou")
        model.head.focal_options = options
    else:
        raise TypeError(f"model: expected a torchvision RetinaNet or FCOS, got {type(model).__name__}")
    return model


def weight_losses(loss_dict: Mapping[str, Tensor], alwa: ALWA, keys: Optional[Sequence[str]] = None) -> dict:
    """Weights a torchvision detector's loss dict with ALWA; returns a new dict.

    Args:
        loss_dict: what the detector returns in training mode.
        alwa: the :class:`alwa_ext.ALWA` that keeps the statistics (one per training run).
        keys: ``(classification_key, regression_key)``. By default the first pair present of
            ``("classification", "bbox_regression")`` (RetinaNet, FCOS) and
            ``("loss_objectness", "loss_rpn_box_reg")`` (the RPN of Faster / Mask / Keypoint
            R-CNN, where the paper applies ALWA).

    The two entries are replaced by ``λcls·loss`` and ``λreg·loss`` (ALWA's weights before this
    call's update); the others pass through unchanged, in the same order.
    """
    if not isinstance(alwa, ALWA):
        raise TypeError(f"alwa: expected an alwa_ext.ALWA, got {type(alwa).__name__}")
    if not isinstance(loss_dict, Mapping):
        raise TypeError(f"loss_dict: expected a dict of losses, got {type(loss_dict).__name__}")
    cls_key, reg_key = _loss_keys(loss_dict, keys)
    for key in (cls_key, reg_key):
        value = loss_dict[key]
        if not isinstance(value, Tensor) or value.dim() != 0:
            raise ValueError(f"loss_dict[{key!r}]: expected a 0-dim tensor, got {value!r:.80}")
    weighted_cls, weighted_reg = alwa(loss_dict[cls_key], loss_dict[reg_key])
    weighted = {cls_key: weighted_cls, reg_key: weighted_reg}
    return {key: weighted.get(key, value) for key, value in loss_dict.items()}


def _loss_keys(loss_dict: Mapping[str, Tensor], keys: Optional[Sequence[str]]) -> Tuple[str, str]:
    if keys is None:
        for preset in LOSS_KEY_PRESETS:
            if all(key in loss_dict for key in preset):
                return preset
        raise ValueError(
            f"keys: none of the presets {list(LOSS_KEY_PRESETS)} is in the loss dict (keys {list(loss_dict)}); "
            "pass keys=(classification_key, regression_key)"
        )
    if isinstance(keys, str) or len(keys) != 2 or not all(isinstance(key, str) for key in keys):
        raise ValueError(f"keys: expected (classification_key, regression_key), got {keys!r}")
    if keys[0] == keys[1]:
        raise ValueError(f"keys: the classification and regression keys must differ, got {tuple(keys)}")
    missing = [key for key in keys if key not in loss_dict]
    if missing:
        raise ValueError(f"keys: {missing} not in the loss dict (keys {list(loss_dict)})")
    return keys[0], keys[1]


__all__ = [
    "fuse_box_loss",
    "weight_losses",
    "fuse_focal_loss",
    "FusedRetinaNetRegressionHead",
    "FusedRetinaNetClassificationHead",
    "FusedFCOSHead",
    "DENSE_HEAD_KEYS",
    "RPN_KEYS",
    "LOSS_KEY_PRESETS",
]
