"""Classification losses and the regression-loss dispatch shared by both detectors."""
from __future__ import annotations

from torch import Tensor

import alwa_ext
from alwa_ext.kinds import LOSS_KINDS

from .box_coder import DeltaBoxCoder


def classification_loss(logits: Tensor, labels: Tensor, weight: Tensor, avg_factor: Tensor) -> Tensor:
    """Sigmoid focal loss (alpha 0.25, gamma 2) of ``logits`` (..., C) against class indices
    ``labels`` (C: background), ``weight`` per anchor (0: ignored), averaged over ``avg_factor``.

    One fused ``alwa_ext.sigmoid_focal_loss`` call: no one-hot tensor, the gradient computed with
    the loss; half-precision logits (under autocast) are computed in float32 by the kernel.
    """
    return alwa_ext.sigmoid_focal_loss(logits, labels, weight=weight, avg_factor=avg_factor)


def regression_loss(
    kind: str,
    coder: DeltaBoxCoder,
    reference: Tensor,
    deltas: Tensor,
    target_boxes: Tensor,
    weight: Tensor,
    avg_factor: Tensor,
    smooth_l1_beta: float = 1.0 / 9.0,
) -> Tensor:
    """Box-regression loss of predicted ``deltas`` against ``target_boxes``, averaged over ``avg_factor``.

    One fused ``alwa_ext.box_loss`` call in its delta format: IoU-family kinds decode the deltas
    against ``reference`` and compare boxes, L1 kinds compare the deltas with the encoded
    targets. Every box of the fixed-shape batch goes in; ``weight`` (0 for all but positives)
    selects which count, so there is no data-dependent indexing, and ``avg_factor`` is a device
    tensor, so there is no sync.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown regression loss {kind!r}; choose one of {', '.join(LOSS_KINDS)}")
    deltas = deltas.float()
    return alwa_ext.box_loss(
        deltas,
        target_boxes.float(),
        kind,
        box_format="deltas",
        anchors=reference.float().expand_as(deltas),
        delta_means=coder.means,
        delta_stds=coder.stds,
        wh_ratio_clip=coder.wh_ratio_clip,
        weight=weight.float(),
        avg_factor=avg_factor,
        beta=smooth_l1_beta,
    )
