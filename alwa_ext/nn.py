"""Loss modules with mmdet's call convention, so they drop into mmdet configs.

``forward(pred, target, weight=None, avg_factor=None, reduction_override=None, **kwargs)``
returns ``loss_weight * box_loss(...)``. As in mmdet, where a loss module passes ``**kwargs``
on to its loss function, the keyword arguments set :func:`alwa_ext.box_loss` options for that
call (``eps``, ``beta``, ``alpha``, ``focal_gamma``, ``box_format``, ``anchors``,
``delta_means``, ``delta_stds``, ``wh_ratio_clip``); any other keyword is a TypeError.
:class:`SigmoidFocalLoss` has the signature of mmdet's ``FocalLoss`` and returns
``loss_weight * sigmoid_focal_loss(...)``; :class:`DistributionFocalLoss` that of mmdet's
``DistributionFocalLoss``, returning ``loss_weight * distribution_focal_loss(...)``.
(``alwa_ext.integrations.mmdet.register()`` registers these modules with mmdet.)
"""
from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn

from . import _validation as check
from .functional import box_loss, distribution_focal_loss, sigmoid_focal_loss
from .kinds import REDUCTIONS

# The box_loss keyword options a call may set (mmdet passes a loss module's **kwargs on to
# its loss function, so heads can set per-call options such as the anchors of deltas).
CALL_OPTIONS = (
    "eps", "beta", "alpha", "focal_gamma", "box_format", "anchors", "delta_means", "delta_stds", "wh_ratio_clip",
)


def _call_reduction(reduction: str, reduction_override: Optional[str]) -> str:
    """mmdet's rule: a call's ``reduction_override``, where given, replaces the module's."""
    if reduction_override is None:
        return reduction
    check.check_choice("reduction_override", reduction_override, REDUCTIONS)
    return reduction_override


class BoxLoss(nn.Module):
    """Any box-regression loss of :func:`alwa_ext.box_loss`, chosen by ``loss``."""

    def __init__(
        self,
        loss: str = "giou",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        eps: float = 1e-7,
        beta: float = 1.0,
        box_format: str = "xyxy",
        alpha: float = 1.0,
        focal_gamma: float = 0.0,
    ) -> None:
        super().__init__()
        check.check_choice("reduction", reduction, REDUCTIONS)
        self.loss = loss
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.eps = eps
        self.beta = beta
        self.box_format = box_format
        self.alpha = alpha
        self.focal_gamma = focal_gamma

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[Union[float, Tensor]] = None,
        reduction_override: Optional[str] = None,
        **kwargs,
    ) -> Tensor:
        unknown = sorted(set(kwargs) - set(CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.forward: unexpected keyword argument(s) {', '.join(map(repr, unknown))} "
                f"(it takes the box_loss options {', '.join(CALL_OPTIONS)})"
            )
        reduction = _call_reduction(self.reduction, reduction_override)
        options = dict(
            box_format=self.box_format, eps=self.eps, beta=self.beta, alpha=self.alpha, focal_gamma=self.focal_gamma
        )
        options.update(kwargs)
        loss = box_loss(pred, target, self.loss, weight=weight, reduction=reduction, avg_factor=avg_factor, **options)
        return loss if self.loss_weight == 1.0 else self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"loss={self.loss!r}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"


class _IoUKindLoss(BoxLoss):
    kind = ""

    def __init__(self, reduction="mean", loss_weight=1.0, eps=1e-7, box_format="xyxy", alpha=1.0) -> None:
        super().__init__(self.kind, reduction, loss_weight, eps=eps, box_format=box_format, alpha=alpha)


class IoULoss(_IoUKindLoss):
    """1 - IoU."""

    kind = "iou"


class GIoULoss(_IoUKindLoss):
    """Generalized IoU loss."""

    kind = "giou"


class DIoULoss(_IoUKindLoss):
    """Distance IoU loss."""

    kind = "diou"


class CIoULoss(_IoUKindLoss):
    """Complete IoU loss."""

    kind = "ciou"


class EIoULoss(BoxLoss):
    """Efficient IoU loss (Focal-EIoU paper); ``focal_gamma > 0`` adds the IoU**gamma factor."""

    def __init__(self, reduction="mean", loss_weight=1.0, eps=1e-7, box_format="xyxy", focal_gamma=0.0) -> None:
        super().__init__("eiou", reduction, loss_weight, eps=eps, box_format=box_format, focal_gamma=focal_gamma)


class SIoULoss(BoxLoss):
    """SCYLLA-IoU loss (SIoU paper, the paper's signs)."""

    def __init__(self, reduction="mean", loss_weight=1.0, eps=1e-7, box_format="xyxy") -> None:
        super().__init__("siou", reduction, loss_weight, eps=eps, box_format=box_format)


class L1Loss(BoxLoss):
    """|pred - target| per coordinate."""

    def __init__(self, reduction="mean", loss_weight=1.0) -> None:
        super().__init__("l1", reduction, loss_weight)


class SmoothL1Loss(BoxLoss):
    """Smooth L1 (Huber divided by beta) per coordinate, mmdet's convention."""

    def __init__(self, beta=1.0, reduction="mean", loss_weight=1.0) -> None:
        super().__init__("smooth_l1", reduction, loss_weight, beta=beta)


class SigmoidFocalLoss(nn.Module):
    """The fused sigmoid focal loss with mmdet ``FocalLoss``'s signature and call convention.

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``: ``target``
    holds class indices (``pred.shape[:-1]``, the value C meaning background) or float targets
    of ``pred``'s shape; ``weight`` is per anchor or per element. ``use_sigmoid`` must be True
    and ``activated`` False (the softmax and probability-input forms are other losses).
    """

    def __init__(
        self,
        use_sigmoid: bool = True,
        gamma: float = 2.0,
        alpha: float = 0.25,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        activated: bool = False,
    ) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError("use_sigmoid: SigmoidFocalLoss is the sigmoid focal loss; got use_sigmoid=False")
        if activated:
            raise ValueError("activated: SigmoidFocalLoss takes logits; got activated=True (probabilities)")
        check.check_choice("reduction", reduction, REDUCTIONS)
        check.check_nonnegative("gamma", gamma)
        self.use_sigmoid = True
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[Union[float, Tensor]] = None,
        reduction_override: Optional[str] = None,
    ) -> Tensor:
        reduction = _call_reduction(self.reduction, reduction_override)
        loss = sigmoid_focal_loss(
            pred, target, alpha=self.alpha, gamma=self.gamma, weight=weight, reduction=reduction, avg_factor=avg_factor
        )
        return loss if self.loss_weight == 1.0 else self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"


class DistributionFocalLoss(nn.Module):
    """The fused distribution focal loss with mmdet ``DistributionFocalLoss``'s signature and
    call convention (GFL, TOOD, RTMDet heads).

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``: ``pred``
    holds logits (..., n_bins), ``target`` distances in bins (``pred.shape[:-1]``), ``weight``
    is per distance or per box (:func:`alwa_ext.distribution_focal_loss`).
    """

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        check.check_choice("reduction", reduction, REDUCTIONS)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[Union[float, Tensor]] = None,
        reduction_override: Optional[str] = None,
    ) -> Tensor:
        reduction = _call_reduction(self.reduction, reduction_override)
        loss = distribution_focal_loss(pred, target, weight=weight, reduction=reduction, avg_factor=avg_factor)
        return loss if self.loss_weight == 1.0 else self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"


__all__ = [
    "BoxLoss",
    "IoULoss",
    "GIoULoss",
    "DIoULoss",
    "CIoULoss",
    "EIoULoss",
    "SIoULoss",
    "L1Loss",
    "SmoothL1Loss",
    "SigmoidFocalLoss",
    "DistributionFocalLoss",
]
