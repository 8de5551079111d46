"""Classification losses and the regression-loss dispatch shared by both detectors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import alwa_ext
from alwa_ext.kinds import LOSS_KINDS

from .box_coder import DeltaBoxCoder


def sigmoid_focal_loss_sum(logits: Tensor, targets: Tensor, weight: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Summed focal loss of ``logits`` against 0/1 ``targets`` (same shape), ``weight`` broadcast per box.

    Computed in float32 even under autocast: (1 - p_t)^gamma underflows in half precision.
    """
    logits = logits.float()
    targets = targets.float()
    prob = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    prob_true = prob * targets + (1 - prob) * (1 - targets)
    alpha_true = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_true * (1 - prob_true).pow(gamma) * cross_entropy
    return (loss * weight.float()[..., None]).sum()


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
