"""The fused torchvision heads behind alwa_ext.integrations.torchvision: subclasses of
torchvision's RetinaNet regression and classification heads and of its FCOS head whose
``compute_loss`` calls alwa_ext's fused ops, with torchvision's box coder and normalisation.
They add no parameters or buffers, so state dicts load both ways. Import them from
alwa_ext.integrations.torchvision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import box_loss
from ..functional import sigmoid_focal_loss as fused_sigmoid_focal_loss
from ..kinds import COORDINATE_KINDS, IOU_KINDS, LOSS_KINDS
from ._common import check_loss_config, import_framework

import_framework("torchvision", "alwa_ext.integrations.torchvision", "pip install torchvision")

from torchvision.models.detection._utils import BoxCoder  # noqa: E402
from torchvision.models.detection.fcos import FCOSHead  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead  # noqa: E402
from torchvision.ops import sigmoid_focal_loss  # noqa: E402


# --------------------------------------------------------------------------- helpers


def _share_state(cls, module: nn.Module) -> nn.Module:
    """A ``cls`` instance holding ``module``'s parameters, buffers, submodules and attributes.

    The Parameter objects are the same ones, so an optimizer built before the swap keeps
    training them; the containers are copies, so the old module is left as it was.
    """
    fused = cls.__new__(cls)
    for name, value in vars(module).items():
        vars(fused)[name] = value.copy() if isinstance(value, (dict, set, list)) else value
    return fused


class _FusedHead:
    """What the fused heads share: made from an existing torchvision head (``_head_type``)."""

    _head_type: type

    @classmethod
    def from_head(cls, head, loss: str = "giou", **loss_options):
        """A fused head holding ``head``'s parameters (the same objects) with this loss."""
        if not isinstance(head, cls._head_type):
            raise TypeError(f"head: expected a torchvision {cls._head_type.__name__}, got {type(head).__name__}")
        fused = _share_state(cls, head)
        fused.configure_loss(loss, **loss_options)
        return fused


def _matched_gt_boxes(boxes: Tensor, matched_idxs: Tensor, fallback: Tensor) -> Tensor:
    """The gt box of every anchor (anchors matched to none get box 0; their weight is 0).

    Gathering with the clamped match index, instead of selecting the foreground, keeps the
    shapes independent of the matching: no nonzero, no host sync.
    """
    if boxes.shape[0] == 0:  # no gt in this image: any finite box will do, every weight is 0
        return fallback
    return boxes[matched_idxs.clamp(min=0)]


def _decode(coder, deltas: Tensor, anchors: Tensor) -> Tensor:
    """``coder.decode_single(deltas, anchors)`` for (N, 4) deltas, op for op.

    torchvision's method builds ``torch.tensor(0.5, device=...)`` twice, a blocking
    host-to-device copy (a host sync) on CUDA; multiplying by the Python number 0.5 gives the
    same bits. A coder that is not torchvision's own BoxCoder is called as it is.
    """
    if type(coder) is not BoxCoder:
        return coder.decode_single(deltas, anchors)
    anchors = anchors.to(deltas.dtype)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + 0.5 * widths
    ctr_y = anchors[:, 1] + 0.5 * heights
    wx, wy, ww, wh = coder.weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = torch.clamp(deltas[:, 2] / ww, max=coder.bbox_xform_clip)
    dh = torch.clamp(deltas[:, 3] / wh, max=coder.bbox_xform_clip)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=1)


def _encode(coder, boxes: Tensor, anchors: Tensor) -> Tensor:
    """``coder.encode_single(boxes, anchors)``: deltas of (N, 4) ``boxes`` against ``anchors``.

    torchvision's method copies its weights to the device (``torch.as_tensor(weights,
    device=...)``, a host sync on CUDA); Python numbers give the same products.
    """
    if type(coder) is not BoxCoder:
        return coder.encode_single(boxes, anchors)
    wx, wy, ww, wh = coder.weights
    ex_widths = anchors[:, 2] - anchors[:, 0]
    ex_heights = anchors[:, 3] - anchors[:, 1]
    ex_ctr_x = anchors[:, 0] + 0.5 * ex_widths
    ex_ctr_y = anchors[:, 1] + 0.5 * ex_heights
    gt_widths = boxes[:, 2] - boxes[:, 0]
    gt_heights = boxes[:, 3] - boxes[:, 1]
    gt_ctr_x = boxes[:, 0] + 0.5 * gt_widths
    gt_ctr_y = boxes[:, 1] + 0.5 * gt_heights
    dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
    dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
    dw = ww * torch.log(gt_widths / ex_widths)
    dh = wh * torch.log(gt_heights / ex_heights)
    return torch.stack((dx, dy, dw, dh), dim=1)


def _common_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


# --------------------------------------------------------------------------- RetinaNet


class FusedRetinaNetRegressionHead(_FusedHead, RetinaNetRegressionHead):
    """RetinaNet's regression head with its loss computed by :func:`alwa_ext.box_loss`.

    Same layers, parameter names and forward as ``RetinaNetRegressionHead``; ``compute_loss``
    returns torchvision's value for torchvision's kinds (``l1``, ``smooth_l1``, ``giou``,
    ``diou``, ``ciou``) and takes every alwa_ext kind. Make one from an existing head with
    :meth:`from_head` (what :func:`fuse_box_loss` does), or build it like the parent.
    """

    _head_type = RetinaNetRegressionHead

    def __init__(self, in_channels, num_anchors, norm_layer=None, *, loss: str = "giou", **loss_options) -> None:
        super().__init__(in_channels, num_anchors, norm_layer=norm_layer)
        self.configure_loss(loss, **loss_options)

    def configure_loss(self, loss: str = "giou", **loss_options) -> None:
        """Sets the loss kind and its options (eps, beta, alpha, focal_gamma of box_loss).

        torchvision's defaults carry over: eps 1e-7 and, for smooth_l1, beta 1 (RetinaNet calls
        its ``_box_loss`` without a config, so beta is 1 there, not the 1/9 of the R-CNN heads).
        """
        self.loss_options = check_loss_config(loss, loss_options, LOSS_KINDS)
        self.loss_kind = loss

    def extra_repr(self) -> str:
        return f"loss={self.loss_kind!r}" + "".join(f", {k}={v!r}" for k, v in self.loss_options.items())

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> Tensor:
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor], list[Tensor]) -> Tensor
        bbox_regression = head_outputs["bbox_regression"]  # (N, A, 4) deltas
        anchors = torch.stack(anchors)  # (N, A, 4)
        matched = torch.stack(matched_idxs)  # (N, A); >= 0: foreground
        gt_boxes = torch.stack(
            [_matched_gt_boxes(t["boxes"], m, a) for t, m, a in zip(targets, matched, anchors)]
        )
        foreground = matched >= 0
        # torchvision: sum over each image's foreground / max(1, its count), then mean over
        # images (/ max(1, N)). As one weight per anchor: one fused call for the whole batch.
        counts = foreground.sum(dim=1, keepdim=True).clamp(min=1)
        num_images = max(1, len(targets))

        # The exact-parity path: the deltas are decoded (IoU kinds) or the targets encoded (L1
        # kinds) with torchvision's BoxCoder arithmetic (its weights and bbox_xform_clip), and
        # box_loss compares plain boxes / numbers.
        # box_loss(box_format="deltas") would decode inside the kernel, but differs from
        # BoxCoder: it clamps dw/dh from both sides (BoxCoder only from above, at
        # bbox_xform_clip), floors sizes at eps when encoding (BoxCoder does not), scales by
        # stds = 1/weights where BoxCoder divides by weights, and centres at (x1 + x2)/2 where
        # BoxCoder uses x1 + w/2 (last-bit differences). The coder costs a few elementwise ops.
        flat_deltas = bbox_regression.reshape(-1, 4)
        flat_anchors = anchors.reshape(-1, 4)
        flat_gt = gt_boxes.reshape(-1, 4)
        if self.loss_kind in COORDINATE_KINDS:
            pred = flat_deltas
            target = _encode(self.box_coder, flat_gt, flat_anchors)
        else:
            pred = _decode(self.box_coder, flat_deltas, flat_anchors)
            target = flat_gt
        dtype = _common_dtype(pred, target)
        weight = (foreground.to(dtype) / counts.to(dtype) / num_images).reshape(-1)
        return box_loss(
            pred.to(dtype), target.to(dtype), self.loss_kind, weight=weight, reduction="sum", **self.loss_options
        )


# --------------------------------------------------------------------------- FCOS


class FusedFCOSHead(_FusedHead, FCOSHead):
    """FCOS's head with its box-regression loss computed by :func:`alwa_ext.box_loss`.

    ``compute_loss`` returns the same three losses as ``FCOSHead`` (classification, GIoU
    regression, centre-ness; each summed over the batch's foreground and divided by
    max(1, its count)), with the regression kind any alwa_ext IoU kind. Unlike torchvision's,
    it reads nothing back to the host (torchvision's calls ``.item()`` for the count).
    """

    _head_type = FCOSHead

    def __init__(self, in_channels, num_anchors, num_classes, num_convs=4, *, loss: str = "giou", **loss_options) -> None:
        super().__init__(in_channels, num_anchors, num_classes, num_convs)
        self.configure_loss(loss, **loss_options)

    def configure_loss(self, loss: str = "giou", **loss_options) -> None:
        """Sets the regression loss: an IoU kind (FCOS decodes its distances to boxes)."""
        self.loss_options = check_loss_config(loss, loss_options, IOU_KINDS)
        self.loss_kind = loss
        if not hasattr(self, "focal_options"):
            self.focal_options = None  # torchvision's focal loss until fuse_focal_loss

    def extra_repr(self) -> str:
        return f"loss={self.loss_kind!r}" + "".join(f", {k}={v!r}" for k, v in self.loss_options.items())

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor], list[Tensor]) -> dict[str, Tensor]
        cls_logits = head_outputs["cls_logits"]  # (N, A, C)
        bbox_regression = head_outputs["bbox_regression"]  # (N, A, 4)
        bbox_ctrness = head_outputs["bbox_ctrness"]  # (N, A, 1)
        matched = torch.stack(matched_idxs)
        foreground = matched >= 0
        gt_classes, gt_boxes = [], []
        for targets_per_image, matched_per_image in zip(targets, matched):
            labels, boxes = targets_per_image["labels"], targets_per_image["boxes"]
            if labels.shape[0] == 0:  # as torchvision: class 0 and zero boxes, all background
                gt_classes.append(labels.new_zeros(matched_per_image.shape))
                gt_boxes.append(boxes.new_zeros(matched_per_image.shape + (4,)))
            else:
                index = matched_per_image.clamp(min=0)
                gt_classes.append(labels[index])
                gt_boxes.append(boxes[index])
        gt_classes, gt_boxes, anchors = torch.stack(gt_classes), torch.stack(gt_boxes), torch.stack(anchors)
        # A 0-dim tensor: dividing by it keeps the count on the device.
        num_foreground = foreground.sum().clamp(min=1)
        fg = foreground.to(cls_logits.dtype)

        if self.focal_options is not None:  # fuse_focal_loss: class indices, background = C
            labels = torch.where(foreground, gt_classes, cls_logits.shape[-1])
            loss_cls = fused_sigmoid_focal_loss(cls_logits, labels, reduction="sum", **self.focal_options)
        else:
            # One-hot at the foreground only, by scatter and a mask instead of boolean indexing.
            gt_classes_targets = torch.zeros_like(cls_logits).scatter_(-1, gt_classes.unsqueeze(-1), 1.0)
            gt_classes_targets = gt_classes_targets * fg.unsqueeze(-1)
            loss_cls = sigmoid_focal_loss(cls_logits, gt_classes_targets, reduction="sum")

        pred_boxes = self.box_coder.decode(bbox_regression, anchors)
        dtype = _common_dtype(pred_boxes, gt_boxes)
        loss_bbox_reg = box_loss(
            pred_boxes.to(dtype),
            gt_boxes.to(dtype),
            self.loss_kind,
            weight=foreground.to(dtype),
            reduction="sum",
            **self.loss_options,
        )

        bbox_reg_targets = self.box_coder.encode(anchors, gt_boxes)
        if bbox_reg_targets.shape[0] == 0:
            gt_ctrness_targets = bbox_reg_targets.new_zeros(bbox_reg_targets.shape[:-1])
        else:
            # Strided slices for torchvision's [0, 2] / [1, 3]: a list index would be copied to
            # the device.
            left_right = bbox_reg_targets[..., 0::2]
            top_bottom = bbox_reg_targets[..., 1::2]
            gt_ctrness_targets = torch.sqrt(
                (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0])
            )
            # Background anchors (outside their box 0) give negative ratios, so NaN: zero them
            # before the BCE, or its gradient would be NaN * 0.
            gt_ctrness_targets = torch.where(foreground, gt_ctrness_targets, 0.0)
        pred_centerness = bbox_ctrness.squeeze(dim=2)
        loss_bbox_ctrness = (
            F.binary_cross_entropy_with_logits(pred_centerness, gt_ctrness_targets, reduction="none") * fg
        ).sum()

        return {
            "classification": loss_cls / num_foreground,
            "bbox_regression": loss_bbox_reg / num_foreground,
            "bbox_ctrness": loss_bbox_ctrness / num_foreground,
        }


# --------------------------------------------------------------------------- focal loss


def _focal_options(alpha: float, gamma: float) -> dict:
    if not (isinstance(alpha, (int, float)) and alpha <= 1):
        raise ValueError(f"alpha: expected a number <= 1 (negative: no weighting), got {alpha!r}")
    if not (isinstance(gamma, (int, float)) and 0 <= gamma < float("inf")):
        raise ValueError(f"gamma: expected a finite number >= 0, got {gamma!r}")
    return {"alpha": float(alpha), "gamma": float(gamma)}


class FusedRetinaNetClassificationHead(RetinaNetClassificationHead):
    """RetinaNet's classification head with its loss computed by :func:`alwa_ext.sigmoid_focal_loss`.

    Same layers, parameter names and forward as ``RetinaNetClassificationHead``;
    ``compute_loss`` returns torchvision's value (each image's focal loss over its anchors that
    are not between the IoU thresholds, over its foreground count, averaged over images) in one
    call on class indices, with no one-hot tensor, no per-image loop and no host sync (torchvision
    divides by ``max(1, count)``, a Python max over a tensor).
    """

    @classmethod
    def from_head(cls, head, *, alpha: float = 0.25, gamma: float = 2.0):
        if not isinstance(head, RetinaNetClassificationHead):
            raise TypeError(f"head: expected a torchvision RetinaNetClassificationHead, got {type(head).__name__}")
        fused = _share_state(cls, head)
        fused.focal_options = _focal_options(alpha, gamma)
        return fused

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.focal_options.items())

    def compute_loss(self, targets, head_outputs, matched_idxs) -> Tensor:
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor]) -> Tensor
        cls_logits = head_outputs["cls_logits"]  # (N, A, C)
        num_classes = cls_logits.shape[-1]
        matched = torch.stack(matched_idxs)  # (N, A); >= 0 foreground, -1 background, -2 between
        foreground = matched >= 0
        labels = []
        for targets_per_image, matched_per_image in zip(targets, matched):
            if targets_per_image["labels"].shape[0] == 0:
                labels.append(torch.full_like(matched_per_image, num_classes))
            else:
                gt = targets_per_image["labels"][matched_per_image.clamp(min=0)]
                labels.append(torch.where(matched_per_image >= 0, gt, num_classes))
        labels = torch.stack(labels)
        valid = matched != self.BETWEEN_THRESHOLDS
        counts = foreground.sum(dim=1, keepdim=True).clamp(min=1)
        weight = valid.to(cls_logits.dtype) / counts.to(cls_logits.dtype) / max(1, len(targets))
        return fused_sigmoid_focal_loss(cls_logits, labels, weight=weight, reduction="sum", **self.focal_options)
