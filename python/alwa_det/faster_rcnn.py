"""Faster R-CNN: backbone + FPN, a region proposal network and a RoI head.

As in the paper, the loss weighting (fixed or ALWA) acts on the RPN's (objectness, regression)
pair; the RoI head's two losses are added with weight 1. Everything in the training step has a
fixed shape: proposals are a top-k after a fixed-shape NMS, and RoIs are a fixed-size sample.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_coder import DeltaBoxCoder
from .detector_base import DetectorBase, Detections, InferenceSettings, PyramidSettings, flatten_levels, select_detections
from .losses import regression_loss
from .matcher import IoUMatcher, batched_iou, gather_gt, sample_fixed
from .nms import nms_keep_mask

# The RoI head's coder: torchvision's weights (10, 10, 5, 5) are mmdet's stds (0.1, 0.1, 0.2, 0.2).
ROI_CODER_STDS = (0.1, 0.1, 0.2, 0.2)


def roi_align(features: List[Tensor], strides: List[int], rois: Tensor, output_size: int, sampling_ratio: int, finest_scale: float) -> Tensor:
    """Pure-PyTorch RoIAlign over FPN levels, torchvision's ``roi_align(aligned=True)`` semantics.

    ``rois`` (B, R, 4) in image coordinates -> (B, R, C, output_size, output_size). Each RoI is
    pooled from one level, chosen by its size as in mmdet: level = floor(log2(sqrt(area) /
    finest_scale + 1e-6)), clamped to the pyramid. Each bin averages ``sampling_ratio`` squared
    bilinear samples; a sample more than one pixel outside the map reads zero, one within a pixel
    of the border reads the border. All levels are flattened into one (B, C, sum H*W) tensor
    and every RoI gathers from its own level's slice, so the shapes never depend on which level
    each RoI picked (no host sync) and no level is sampled in vain.
    """
    batch, count = rois.shape[:2]
    channels = features[0].shape[1]
    device = rois.device
    points = output_size * sampling_ratio
    flat = torch.cat([f.flatten(2) for f in features], dim=2)  # (B, C, sum H*W)
    heights = torch.tensor([f.shape[-2] for f in features], device=device)
    widths = torch.tensor([f.shape[-1] for f in features], device=device)
    offsets = torch.cumsum(heights * widths, 0) - heights * widths
    scales = torch.tensor([1.0 / s for s in strides], device=device, dtype=rois.dtype)

    x1, y1, x2, y2 = rois.unbind(dim=-1)
    size = ((x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)).sqrt()
    level = torch.floor(torch.log2(size / finest_scale + 1e-6)).clamp(0, len(features) - 1).long()
    scale = scales[level]
    steps = (torch.arange(points, device=device, dtype=rois.dtype) + 0.5) / points  # sample positions as RoI fractions

    def axis(start, end, limit):
        """Per-RoI sample coordinates along one axis: low/high neighbours, weight of high, inside mask."""
        coordinate = (start * scale - 0.5)[..., None] + steps * ((end - start) * scale)[..., None]  # (B, R, P)
        limit = limit[level][..., None].to(rois.dtype)
        inside = (coordinate >= -1.0) & (coordinate <= limit)
        coordinate = coordinate.clamp(min=0)
        low = coordinate.floor().clamp(max=limit - 1)
        high = (low + 1).clamp(max=limit - 1)
        coordinate = torch.minimum(coordinate, limit - 1)
        return low.long(), high.long(), coordinate - low, inside

    y_low, y_high, y_frac, y_inside = axis(y1, y2, heights)
    x_low, x_high, x_frac, x_inside = axis(x1, x2, widths)
    row_start = offsets[level][..., None, None]  # (B, R, 1, 1)
    row_width = widths[level][..., None, None]
    inside = (y_inside[..., :, None] & x_inside[..., None, :]).to(flat.dtype)
    pooled = 0
    for rows, row_weight in ((y_low, 1 - y_frac), (y_high, y_frac)):
        for cols, col_weight in ((x_low, 1 - x_frac), (x_high, x_frac)):
            index = row_start + rows[..., :, None] * row_width + cols[..., None, :]  # (B, R, P, P)
            weight = (row_weight[..., :, None] * col_weight[..., None, :]).to(flat.dtype) * inside
            values = torch.gather(flat, 2, index.reshape(batch, 1, -1).expand(-1, channels, -1))
            pooled = pooled + values * weight.reshape(batch, 1, -1)
    pooled = pooled.view(batch, channels, count, output_size, sampling_ratio, output_size, sampling_ratio).mean(dim=(4, 6))
    return pooled.permute(0, 2, 1, 3, 4)


class RPNHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for module in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def forward(self, features: List[Tensor]):
        hidden = [F.relu(self.conv(x)) for x in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


class RoIHead(nn.Module):
    def __init__(self, channels: int, pooled_size: int, hidden: int, num_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(channels * pooled_size * pooled_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cls = nn.Linear(hidden, num_classes + 1)  # the last class is background
        self.deltas = nn.Linear(hidden, num_classes * 4)  # one box per class
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.deltas.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.deltas.bias)

    def forward(self, pooled: Tensor) -> Tuple[Tensor, Tensor]:
        hidden = F.relu(self.fc2(F.relu(self.fc1(pooled.flatten(1)))))
        return self.cls(hidden), self.deltas(hidden)


class FasterRCNN(DetectorBase):
    # The RoI head's losses (the RPN's pair is the weighted one).
    extra_losses = ("roi_cls", "roi_reg")

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        regression_loss_kind: str,
        pyramid: Optional[PyramidSettings] = None,
        rpn_pre_nms_per_level: int = 1000,
        rpn_post_nms: int = 1000,
        rpn_nms_threshold: float = 0.7,
        rpn_samples: int = 256,
        roi_samples: int = 512,
        roi_positive_fraction: float = 0.25,
        roi_hidden: int = 1024,
        pooled_size: int = 7,
        sampling_ratio: int = 2,
        finest_scale: float = 56.0,
        inference: Optional[InferenceSettings] = None,
    ):
        # Levels from stride 4 and one anchor scale per location, larger than RetinaNet's.
        pyramid = pyramid or PyramidSettings(min_level=2, max_level=6, anchor_base_scale=8.0)
        super().__init__(backbone, num_classes, regression_loss_kind, pyramid, (1.0,), inference)
        self.rpn_head = RPNHead(pyramid.channels, self.anchor_generator.anchors_per_location)
        self.rpn_coder = DeltaBoxCoder()
        self.roi_coder = DeltaBoxCoder(stds=ROI_CODER_STDS)
        self.rpn_matcher = IoUMatcher(0.7, 0.3, allow_low_quality=True, low_quality_min_iou=0.3)
        self.roi_matcher = IoUMatcher(0.5, 0.5, allow_low_quality=False)
        self.rpn_pre_nms_per_level = rpn_pre_nms_per_level
        self.rpn_post_nms = rpn_post_nms
        self.rpn_nms_threshold = rpn_nms_threshold
        self.rpn_samples = rpn_samples
        self.roi_samples = roi_samples
        self.roi_positive_fraction = roi_positive_fraction
        self.pooled_size = pooled_size
        self.sampling_ratio = sampling_ratio
        self.finest_scale = finest_scale
        self.roi_head = RoIHead(pyramid.channels, pooled_size, roi_hidden, num_classes)

    # -- region proposals ------------------------------------------------------------------
    def _rpn(self, features: List[Tensor]):
        objectness_levels, delta_levels = self.rpn_head(features)
        anchor_levels = self.anchor_generator.grid_anchors([f.shape[-2:] for f in features], features[0].device)
        return objectness_levels, delta_levels, anchor_levels

    @torch.no_grad()
    def _proposals(self, objectness_levels, delta_levels, anchor_levels, image_size) -> Tuple[Tensor, Tensor]:
        """(B, P, 4) proposals and their (B, P) validity: per-level top-k, NMS across levels kept apart."""
        boxes, scores, levels = [], [], []
        for level, (objectness, deltas, anchors) in enumerate(zip(objectness_levels, delta_levels, anchor_levels)):
            objectness = flatten_levels([objectness], 1)[..., 0].float()
            deltas = flatten_levels([deltas], 4).float()
            top_scores, top_index = objectness.topk(min(self.rpn_pre_nms_per_level, objectness.shape[1]), dim=1)
            top_deltas = torch.gather(deltas, 1, top_index[..., None].expand(-1, -1, 4))
            decoded = self.rpn_coder.decode(top_deltas, anchors[top_index], image_size)
            boxes.append(decoded)
            scores.append(top_scores)
            levels.append(torch.full_like(top_index, level))
        boxes, scores, levels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels, 1)
        valid = ((boxes[..., 2] - boxes[..., 0]) > 0) & ((boxes[..., 3] - boxes[..., 1]) > 0)
        # Proposals from different levels never suppress each other (mmdet's per-level NMS).
        span = float(max(image_size)) + 1.0
        keep = nms_keep_mask(boxes + (levels * span)[..., None], scores, valid, self.rpn_nms_threshold)
        ranked = torch.where(keep, scores, torch.full_like(scores, float("-inf")))
        top_scores, top_index = ranked.topk(min(self.rpn_post_nms, ranked.shape[1]), dim=1)
        proposals = torch.gather(boxes, 1, top_index[..., None].expand(-1, -1, 4))
        return proposals, torch.isfinite(top_scores)

    def _rpn_losses(self, objectness_levels, delta_levels, anchor_levels, gt_boxes, gt_valid) -> Tuple[Tensor, Tensor]:
        objectness = flatten_levels(objectness_levels, 1)[..., 0]
        deltas = flatten_levels(delta_levels, 4)
        anchors = torch.cat(anchor_levels)
        with torch.no_grad():
            match = self.rpn_matcher(batched_iou(gt_boxes, anchors), gt_valid)
            sampled = sample_fixed(match.positive, match.negative, self.rpn_samples, 0.5)
            positive = match.positive & sampled
            num_sampled = sampled.sum().float().clamp(min=1.0)
            target_boxes = gather_gt(gt_boxes, match.gt_index)
        loss_cls = (
            F.binary_cross_entropy_with_logits(objectness.float(), positive.float(), weight=sampled.float(), reduction="sum")
            / num_sampled
        )
        loss_reg = regression_loss(
            self.regression_loss_kind, self.rpn_coder, anchors.expand_as(deltas), deltas, target_boxes, positive.float(), num_sampled
        )
        return loss_cls, loss_reg

    # -- RoI head ----------------------------------------------------------------------------
    def _pool(self, features: List[Tensor], rois: Tensor) -> Tensor:
        strides = self.fpn.strides[: len(features)]
        pooled = roi_align(features, strides, rois, self.pooled_size, self.sampling_ratio, self.finest_scale)
        return pooled.flatten(0, 1)

    def _roi_losses(self, features, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid) -> Tuple[Tensor, Tensor]:
        batch = proposals.shape[0]
        with torch.no_grad():
            # Ground truth joins the candidates so the head sees good positives from the start.
            candidates = torch.cat([proposals, gt_boxes], dim=1)
            candidate_valid = torch.cat([proposal_valid, gt_valid], dim=1)
            match = self.roi_matcher(batched_iou(gt_boxes, candidates), gt_valid)
            positive = match.positive & candidate_valid
            negative = match.negative & candidate_valid
            sampled = sample_fixed(positive, negative, self.roi_samples, self.roi_positive_fraction)
            # A fixed number of RoIs per image: the sampled ones first, padding weighted zero.
            count = min(self.roi_samples, candidates.shape[1])
            order_key = sampled.float() * 2 + torch.rand(sampled.shape, device=sampled.device)
            chosen = order_key.topk(count, dim=1).indices
            rois = torch.gather(candidates, 1, chosen[..., None].expand(-1, -1, 4))
            roi_weight = torch.gather(sampled, 1, chosen).float()
            roi_positive = torch.gather(positive & sampled, 1, chosen)
            roi_gt = torch.gather(match.gt_index, 1, chosen)
            labels = torch.where(roi_positive, gather_gt(gt_labels, roi_gt), torch.full_like(roi_gt, self.num_classes))
            target_boxes = gather_gt(gt_boxes, roi_gt)
            num_sampled = roi_weight.sum().clamp(min=1.0)
        cls_logits, class_deltas = self.roi_head(self._pool(features, rois))
        cls_logits = cls_logits.float().view(batch, count, -1)
        class_deltas = class_deltas.float().view(batch, count, self.num_classes, 4)
        loss_cls = (F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none") * roi_weight.flatten()).sum() / num_sampled
        # Background RoIs pick class 0's box; their regression weight is zero.
        box_class = torch.where(roi_positive, labels, torch.zeros_like(labels))
        deltas = torch.gather(class_deltas, 2, box_class[..., None, None].expand(-1, -1, 1, 4))[:, :, 0]
        loss_reg = regression_loss(
            self.regression_loss_kind, self.roi_coder, rois, deltas, target_boxes, roi_positive.float(), num_sampled
        )
        return loss_cls, loss_reg

    def forward(self, images: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor) -> Dict[str, Tensor]:
        """Training losses: {'cls', 'reg'} of the RPN (the weighted pair) and {'roi_cls', 'roi_reg'}."""
        image_size = images.shape[-2:]
        features = self.features(images)
        objectness_levels, delta_levels, anchor_levels = self._rpn(features)
        rpn_cls, rpn_reg = self._rpn_losses(objectness_levels, delta_levels, anchor_levels, gt_boxes, gt_valid)
        proposals, proposal_valid = self._proposals(objectness_levels, delta_levels, anchor_levels, image_size)
        roi_cls, roi_reg = self._roi_losses(features, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid)
        return {"cls": rpn_cls, "reg": rpn_reg, "roi_cls": roi_cls, "roi_reg": roi_reg}

    @torch.no_grad()
    def detect(self, images: Tensor) -> List[Detections]:
        image_size = images.shape[-2:]
        features = self.features(images)
        objectness_levels, delta_levels, anchor_levels = self._rpn(features)
        proposals, proposal_valid = self._proposals(objectness_levels, delta_levels, anchor_levels, image_size)
        cls_logits, class_deltas = self.roi_head(self._pool(features, proposals))
        batch, count = proposals.shape[:2]
        scores = cls_logits.float().softmax(dim=-1).view(batch, count, -1)[..., : self.num_classes]
        # Invalid proposals (fewer survivors than the budget) must not produce detections.
        scores = scores * proposal_valid[..., None]
        class_deltas = class_deltas.float().view(batch, count, self.num_classes, 4)
        return [
            select_detections([scores[i]], [class_deltas[i]], [proposals[i]], self.roi_coder, image_size, self.inference)
            for i in range(batch)
        ]


