"""What RetinaNet and Faster R-CNN share: input normalisation, level flattening and the
inference tail (score threshold, top-k per level, class-wise NMS, a cap on detections)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .anchors import AnchorGenerator
from .backbone import FPN
from .box_coder import DeltaBoxCoder
from .nms import batched_nms

# ImageNet statistics: harmless for synthetic data and right for a torchvision backbone.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
# Anchor height / width ratios of both detectors.
ANCHOR_RATIOS = (0.5, 1.0, 2.0)


@dataclass
class Detections:
    """One image's detections, in the (resized) input frame."""

    boxes: Tensor  # (K, 4) xyxy
    scores: Tensor  # (K,)
    labels: Tensor  # (K,) long, 0-based class ids


@dataclass
class PyramidSettings:
    """The feature pyramid: its width, its levels (level l has stride 2**l) and the anchors' base
    size on each level, in strides. The defaults are RetinaNet's."""

    channels: int = 64
    min_level: int = 3
    max_level: int = 7
    anchor_base_scale: float = 4.0


@dataclass
class InferenceSettings:
    score_threshold: float = 0.05
    topk_per_level: int = 1000
    nms_threshold: float = 0.5
    max_detections: int = 100


class DetectorBase(nn.Module):
    """Backbone, FPN and anchors on its levels; the detectors add their heads."""

    # Losses besides the weighted (cls, reg) pair that forward() returns; they add with weight 1.
    extra_losses: Tuple[str, ...] = ()

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        regression_loss_kind: str,
        pyramid: PyramidSettings,
        anchor_scales: Sequence[float],
        inference: Optional[InferenceSettings],
    ):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes
        self.regression_loss_kind = regression_loss_kind
        self.backbone = backbone
        self.fpn = FPN(backbone.out_channels, pyramid.channels, pyramid.min_level, pyramid.max_level)
        self.anchor_generator = AnchorGenerator(self.fpn.strides, pyramid.anchor_base_scale, scales=anchor_scales,
                                                ratios=ANCHOR_RATIOS)
        self.inference = inference or InferenceSettings()

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) images, or floats in [0, 1], to normalised floats."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return (images - self.pixel_mean) / self.pixel_std

    def features(self, images: Tensor) -> List[Tensor]:
        """The FPN levels of a batch of images."""
        return self.fpn(self.backbone(self.normalize(images)))


def flatten_levels(per_level: Sequence[Tensor], channels: int) -> Tensor:
    """Head outputs (B, A*channels, H, W) per level to (B, sum H*W*A, channels), in anchor order."""
    flat = []
    for x in per_level:
        batch, _, height, width = x.shape
        flat.append(x.view(batch, -1, channels, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, channels))
    return torch.cat(flat, dim=1)


def select_detections(
    level_scores: List[Tensor],
    level_deltas: List[Tensor],
    level_reference: List[Tensor],
    coder: DeltaBoxCoder,
    image_size: Sequence[int],
    settings: InferenceSettings,
) -> Detections:
    """One image's detections from per-level scores (N_l, C), deltas (N_l, 4) or (N_l, C, 4), references (N_l, 4)."""
    boxes, scores, labels = [], [], []
    for cls_scores, deltas, reference in zip(level_scores, level_deltas, level_reference):
        num_classes = cls_scores.shape[1]
        flat_scores = cls_scores.reshape(-1)
        top_scores, top_index = flat_scores.topk(min(settings.topk_per_level, flat_scores.numel()))
        confident = top_scores > settings.score_threshold
        top_scores, top_index = top_scores[confident], top_index[confident]
        box_index = top_index // num_classes
        class_index = top_index % num_classes
        chosen_deltas = deltas[box_index] if deltas.dim() == 2 else deltas[box_index, class_index]
        boxes.append(coder.decode(chosen_deltas, reference[box_index], image_size))
        scores.append(top_scores)
        labels.append(class_index)
    boxes = torch.cat(boxes)
    scores = torch.cat(scores)
    labels = torch.cat(labels)
    non_empty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[non_empty], scores[non_empty], labels[non_empty]
    keep = batched_nms(boxes, scores, labels, settings.nms_threshold, settings.max_detections)
    return Detections(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])
