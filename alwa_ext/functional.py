"""Public functional API: fused box-regression losses, pairwise IoU, the sigmoid focal loss and the
distribution focal loss."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import ops  # noqa: F401  (fake kernels)
from .kinds import DEFAULT_DELTA_MEANS, DEFAULT_DELTA_STDS, DEFAULT_WH_RATIO_CLIP

# The overloads themselves: calling them skips the packet's overload resolution.
_box_loss = torch.ops.alwa.box_loss.default
_box_iou = torch.ops.alwa.box_iou.default
_sigmoid_focal_loss = torch.ops.alwa.sigmoid_focal_loss.default
_distribution_focal_loss = torch.ops.alwa.distribution_focal_loss.default
_distribution_expectation = torch.ops.alwa.distribution_expectation.default


def _avg_factor_tensor(avg_factor, reduction: str, device) -> Optional[Tensor]:
    # A Python number becomes a device tensor (a fill kernel: no host-to-device copy, no sync);
    # "none" ignores it (mmdet's weight_reduce_loss), so none is made.
    if avg_factor is None or isinstance(avg_factor, Tensor):
        return avg_factor
    return None if reduction == "none" else torch.full((), float(avg_factor), dtype=torch.float64, device=device)


def box_loss(
    pred: Tensor,
    target: Tensor,
    loss: str = "giou",
    *,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
    box_format: str = "xyxy",
    eps: float = 1e-7,
    beta: float = 1.0,
    alpha: float = 1.0,
    focal_gamma: float = 0.0,
    anchors: Optional[Tensor] = None,
    delta_means: Sequence[float] = DEFAULT_DELTA_MEANS,
    delta_stds: Sequence[float] = DEFAULT_DELTA_STDS,
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
) -> Tensor:
    """Box-regression loss of ``pred`` against ``target``, fused into one pass over the boxes.

    Args:
        pred, target: boxes of shape ``(..., 4)`` and one dtype (float32/64, float16, bfloat16;
            half types are computed in float32). ``box_format`` is ``"xyxy"`` (x1, y1, x2, y2),
            ``"cxcywh"`` (centre, width, height) or ``"deltas"`` (below); with xyxy/cxcywh,
            ``l1``/``smooth_l1`` act on the four raw numbers whatever the format.
        loss: ``"iou"`` (1 - IoU), ``"giou"``, ``"diou"``, ``"ciou"``, ``"eiou"`` (Focal-EIoU
            paper), ``"siou"`` (SIoU paper, the paper's signs), ``"l1"`` or ``"smooth_l1"``
            (quadratic below ``beta``, mmdet's convention). Formulas: docs/api.md, "Conventions".
        weight: per box ``(...)`` or per coordinate ``(..., 4)``; IoU kinds average a
            per-coordinate weight over the last dim (mmdet's convention).
        reduction: ``"none"`` (one value per box for IoU kinds, per coordinate for L1 kinds),
            ``"sum"`` or ``"mean"``. Empty inputs reduce to 0.
        avg_factor: with ``"mean"``, divide the sum by ``avg_factor + finfo(float32).eps``
            instead of the element count (mmdet's ``weight_reduce_loss``). A Python number or a
            0-dim tensor, so a count of positives can stay on the device. Ignored by ``"none"``;
            an error with ``"sum"``.
        eps: stabiliser, placed as torchvision places it: IoU = I / (U + eps), GIoU's enclosing
            area + eps, DIoU/CIoU's squared diagonal + eps, CIoU's alpha = v / (1 - IoU + v + eps).
        beta: SmoothL1 threshold (> 0).
        alpha: Alpha-IoU power (> 0) for iou/giou/diou/ciou: ``1 - IoU**alpha`` plus each
            penalty raised to ``alpha``; 1 gives the plain losses (an error with other kinds).
        focal_gamma: Focal-EIoU (``loss="eiou"`` only): the loss times ``IoU**focal_gamma``,
            that factor a constant for the gradient; 0 (default) leaves plain EIoU.
        anchors, delta_means, delta_stds, wh_ratio_clip: with ``box_format="deltas"``, ``pred``
            holds mmdet ``DeltaXYWHBBoxCoder`` deltas against ``anchors`` (same shape, xyxy,
            constants) and ``target`` holds xyxy boxes. IoU kinds decode the deltas (dw, dh
            clamped at ``|log(wh_ratio_clip)|``) and compare the decoded boxes with ``target``,
            as ``box_loss(decode_deltas(pred, anchors, ...), target, ...)`` would (mmdet's
            ``reg_decoded_bbox=True``). ``l1``/``smooth_l1`` compare the deltas themselves with
            ``encode_deltas(target, anchors, ..., eps=eps)``, as mmdet's default pipeline does
            (L1 on the regression targets); ``eps`` must then be > 0. Gradients are w.r.t.
            the deltas.

    Conventions: widths and heights are clamped at 0 (inverted corners are an empty box); CIoU
    uses ``atan2(w, h)`` for the aspect term (finite for zero-height boxes) and treats alpha as a
    constant, as torchvision does (mmdet's CIoU also zeroes alpha where IoU < 0.5; ours does
    not). Every finite input gives a finite loss and finite gradients.

    Gradients flow to ``pred``, ``target``, ``weight`` and a tensor ``avg_factor``; the autograd
    is in C++ (IoU kinds compute the gradient with the loss, L1 kinds in backward). First-order
    gradients only: a second-order gradient raises. Bad arguments raise ValueError naming them.
    """
    # Every argument is checked by the C++ kernel (csrc/box_loss_plan.cpp), which raises
    # ValueError naming it; here only a Python number avg_factor becomes a device tensor.
    avg_factor = _avg_factor_tensor(avg_factor, reduction, pred.device)
    return _box_loss(
        pred, target, weight, avg_factor, anchors, loss, reduction, box_format, eps, beta, alpha, focal_gamma,
        delta_means, delta_stds, wh_ratio_clip,
    )


def box_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", *, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    """Pairwise similarity of ``boxes1`` (M, 4) and ``boxes2`` (N, 4): an (M, N) tensor.

    ``kind`` is ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"``; each value is 1 minus the
    corresponding :func:`box_loss`, with the same conventions and ``eps``. Differentiable.
    """
    return _box_iou(boxes1, boxes2, kind, box_format, eps)


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
) -> Tensor:
    """Sigmoid focal loss (Lin et al., RetinaNet) of ``logits`` (..., C), fused into one pass.

    Per element, with p = sigmoid(logits): ``-alpha_t * (1 - p_t)**gamma * log(p_t)``, where
    p_t = p and alpha_t = alpha for a positive element, 1 - p and 1 - alpha for a negative one,
    extended linearly to soft targets (the log term as binary cross-entropy), as
    ``torchvision.ops.sigmoid_focal_loss`` and mmdet's ``sigmoid_focal_loss`` compute it.

    Args:
        logits: (..., C), float32/64, float16 or bfloat16 (half types computed in float32).
        targets: int64 class indices of shape ``logits.shape[:-1]``, the value C meaning
            background (mmdet's convention; no one-hot tensor is built), or float targets of
            the logits' shape and dtype (torchvision's convention; soft targets allowed). A
            class index outside [0, C] is an error (on CUDA a device-side assert, which the
            next synchronising call reports: the check reads no value on the host).
        alpha: weight of the positives in [0, 1]; None or a negative value turns the weighting
            off (torchvision's ``alpha=-1``).
        gamma: focusing exponent (>= 0); 2 (the default) has its own, faster path.
        weight: per anchor (``logits.shape[:-1]``) or per element (``logits.shape``).
        reduction, avg_factor: as for :func:`box_loss` (mmdet's ``weight_reduce_loss``):
            ``"mean"`` divides the sum by the element count, or by ``avg_factor +
            finfo(float32).eps`` (a number or a 0-dim tensor: a count of positives can stay on
            the device); ``"sum"``; ``"none"`` (the logits' shape). Empty inputs reduce to 0.

    Computed from exp(-|x|) and log1p of it (never 1 - p), so logits of +-100 give finite
    losses and gradients in every dtype; NaN in gives NaN out. Gradients flow to ``logits``,
    ``weight`` and a tensor ``avg_factor``; the gradient w.r.t. the logits is computed in the
    same pass as the loss (autograd in C++). First-order only; targets get no gradient (a float
    target that requires one is refused).
    """
    if alpha is None:
        alpha = -1.0
    avg_factor = _avg_factor_tensor(avg_factor, reduction, logits.device)
    return _sigmoid_focal_loss(logits, targets, weight, avg_factor, alpha, gamma, reduction)


def distribution_focal_loss(
    pred_dist: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
) -> Tensor:
    """Distribution focal loss (Li et al., Generalized Focal Loss) of ``pred_dist`` (..., n_bins)
    against distances ``target`` (...) measured in bins, fused into one pass.

    Per distance t in [0, n_bins - 1], with l = floor(t), r = l + 1 and the softmax over the bins:
    ``(r - t) * CE(pred, l) + (t - l) * CE(pred, r)`` (at t = n_bins - 1, CE(pred, n_bins - 1)).
    This is mmdet's ``distribution_focal_loss`` per distance; ultralytics' ``DFLoss`` is its mean
    over a box's four sides after clamping the target to [0, n_bins - 1.01] (docs/api.md).

    Args:
        pred_dist: logits (..., n_bins), float32/64, float16 or bfloat16 (half types computed in
            float32); any leading shape, e.g. (anchors, 4, n_bins) or mmdet's (N, n_bins).
        target: float distances of shape ``pred_dist.shape[:-1]``, in [0, n_bins - 1]. Nothing is
            clamped: a target outside that range is an error (on CUDA a device-side assert,
            which the next synchronising call reports); a NaN target gives a NaN loss.
        weight: per distance (``target``'s shape) or per box (``target.shape[:-1]``, shared by
            the box's sides). A row of weight exactly 0 is skipped: it contributes 0 and gets a
            zero gradient without being read (ultralytics' background anchors).
        reduction, avg_factor: as for :func:`box_loss` (mmdet's ``weight_reduce_loss``).

    Gradients flow to ``pred_dist``, ``weight`` and a tensor ``avg_factor``, computed in the same
    pass as the loss (autograd in C++); the target gets none. First-order only.
    """
    avg_factor = _avg_factor_tensor(avg_factor, reduction, pred_dist.device)
    return _distribution_focal_loss(pred_dist, target, weight, avg_factor, reduction)


def distribution_expectation(pred_dist: Tensor) -> Tensor:
    """The expectation of each distribution in ``pred_dist`` (..., n_bins) over its bins 0..n_bins - 1:
    ``(softmax(pred_dist, -1) * arange(n_bins)).sum(-1)``, of shape ``pred_dist.shape[:-1]``.

    GFL's ``Integral`` (mmdet) and ultralytics' box decoding (``bbox_decode``: the distances of
    each side from the anchor, in strides) in one pass; the backward takes the softmax again
    rather than keep it (d E / d x_i = p_i (i - E)). Any float dtype (half types in float32).
    """
    return _distribution_expectation(pred_dist)
