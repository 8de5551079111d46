"""Building a detector from a run configuration."""
from __future__ import annotations

from torch import nn

from .backbone import build_backbone
from .config import TrainConfig
from .detector_base import PyramidSettings
from .faster_rcnn import FasterRCNN
from .retinanet import RetinaNet


def build_detector(config: TrainConfig, num_classes: int) -> nn.Module:
    backbone = build_backbone(config.backbone, config.width, config.blocks)
    common = dict(
        backbone=backbone,
        num_classes=num_classes,
        regression_loss_kind=config.loss,
        pyramid=PyramidSettings(config.fpn_channels, config.min_level, config.max_level, config.anchor_scale),
    )
    if config.detector == "retinanet":
        return RetinaNet(head_convs=config.head_convs, **common)
    if config.detector == "faster_rcnn":
        return FasterRCNN(
            roi_samples=config.roi_samples,
            roi_hidden=config.roi_hidden,
            rpn_pre_nms_per_level=config.rpn_pre_nms,
            rpn_post_nms=config.rpn_post_nms,
            **common,
        )
    raise ValueError(f"unknown detector {config.detector!r}")
