"""RetinaNet: backbone + FPN, shared classification and box heads, focal loss, and the chosen
box-regression loss; the (classification, regression) pair is what the loss weighting sees."""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .box_coder import DeltaBoxCoder
from .detector_base import DetectorBase, Detections, InferenceSettings, PyramidSettings, flatten_levels, select_detections
from .losses import classification_loss, regression_loss
from .matcher import IoUMatcher, batched_iou, gather_gt

# Initial foreground probability of the classifier: keeps the many background anchors from
# swamping the first iterations (the RetinaNet paper's prior).
PRIOR_PROBABILITY = 0.01


def norm_groups(channels: int) -> int:
    """GroupNorm's groups: the usual min(32, channels // 4), lowered to a divisor of ``channels`` (so
    any width works, down to one channel, and the usual widths keep the usual groups)."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return groups


class RetinaHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int, num_classes: int, num_convs: int):
        super().__init__()

        def tower():
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(norm_groups(channels), channels),
                           nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower = tower()
        self.reg_tower = tower()
        self.cls_out = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, features: List[Tensor]):
        cls = [self.cls_out(self.cls_tower(x)) for x in features]
        reg = [self.reg_out(self.reg_tower(x)) for x in features]
        return cls, reg


class RetinaNet(DetectorBase):
    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        regression_loss_kind: str,
        head_convs: int = 4,
        pyramid: Optional[PyramidSettings] = None,
        inference: Optional[InferenceSettings] = None,
    ):
        pyramid = pyramid or PyramidSettings()
        # Three anchor scales an octave apart, as in the RetinaNet paper.
        super().__init__(backbone, num_classes, regression_loss_kind, pyramid, (1.0, 2 ** (1 / 3), 2 ** (2 / 3)), inference)
        self.head = RetinaHead(pyramid.channels, self.anchor_generator.anchors_per_location, num_classes, head_convs)
        self.coder = DeltaBoxCoder()
        self.matcher = IoUMatcher(pos_threshold=0.5, neg_threshold=0.4, allow_low_quality=True)

    def forward(self, images: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor) -> Dict[str, Tensor]:
        """Training losses: {'cls': focal loss, 'reg': box loss}, both averaged over positives."""
        features = self.features(images)
        cls_levels, reg_levels = self.head(features)
        anchors = torch.cat(self.anchor_generator.grid_anchors([f.shape[-2:] for f in features], images.device))
        cls_logits = flatten_levels(cls_levels, self.num_classes)
        deltas = flatten_levels(reg_levels, 4)

        with torch.no_grad():
            match = self.matcher(batched_iou(gt_boxes, anchors), gt_valid)
            # Class indices, the background (negatives and ignored anchors) as num_classes.
            labels = torch.where(match.positive, gather_gt(gt_labels, match.gt_index), self.num_classes)
            target_boxes = gather_gt(gt_boxes, match.gt_index)
            # Kept on the device and clamped, so an image without objects neither syncs nor divides by 0.
            num_positive = match.positive.sum().float().clamp(min=1.0)
        cls_weight = (match.positive | match.negative).float()
        loss_cls = classification_loss(cls_logits, labels, cls_weight, num_positive)
        loss_reg = regression_loss(
            self.regression_loss_kind,
            self.coder,
            anchors.expand_as(deltas),
            deltas,
            target_boxes,
            match.positive.float(),
            num_positive,
        )
        return {"cls": loss_cls, "reg": loss_reg}

    @torch.no_grad()
    def detect(self, images: Tensor) -> List[Detections]:
        features = self.features(images)
        cls_levels, reg_levels = self.head(features)
        anchors = self.anchor_generator.grid_anchors([f.shape[-2:] for f in features], images.device)
        image_size = images.shape[-2:]
        results = []
        for index in range(images.shape[0]):
            scores = [flatten_levels([c[index : index + 1]], self.num_classes)[0].float().sigmoid() for c in cls_levels]
            deltas = [flatten_levels([r[index : index + 1]], 4)[0].float() for r in reg_levels]
            results.append(select_detections(scores, deltas, anchors, self.coder, image_size, self.inference))
        return results
