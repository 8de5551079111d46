"""IoU matching of ground truth to anchors or proposals, with fixed shapes.

A batch's ground truth is padded to (B, G, 4) with a validity mask, so matching is a handful of
tensor ops whose output shapes never depend on the data: the training step needs no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import alwa_ext


def batched_iou(gt_boxes: Tensor, boxes: Tensor) -> Tensor:
    """IoU (B, G, N) of padded ground truth (B, G, 4) against shared (N, 4) or per-image (B, N, 4) boxes."""
    batch, num_gt = gt_boxes.shape[:2]
    if boxes.dim() == 2:
        return alwa_ext.box_iou(gt_boxes.reshape(-1, 4), boxes).reshape(batch, num_gt, -1)
    # box_iou is pairwise over two flat sets; a per-image loop over a static batch size keeps it exact.
    return torch.stack([alwa_ext.box_iou(gt_boxes[i], boxes[i]) for i in range(batch)])


@dataclass
class Match:
    gt_index: Tensor  # (B, N) long: the ground truth each box is matched to (meaningful where positive)
    positive: Tensor  # (B, N) bool
    negative: Tensor  # (B, N) bool; boxes neither positive nor negative are ignored
    max_iou: Tensor  # (B, N) best IoU with any valid ground truth (-1 where there is none)


class IoUMatcher:
    """Positive at IoU >= pos_threshold, negative below neg_threshold, ignored in between.

    With ``allow_low_quality``, every box that reaches a ground truth's best IoU becomes positive
    for that ground truth (so each object gets at least one box), provided that best IoU is
    positive and at least ``low_quality_min_iou``; when several objects claim a box, the later one
    wins, as in mmdet's MaxIoUAssigner.
    """

    def __init__(self, pos_threshold: float, neg_threshold: float, allow_low_quality: bool, low_quality_min_iou: float = 0.0):
        if not 0.0 <= neg_threshold <= pos_threshold <= 1.0:
            raise ValueError(f"need 0 <= neg_threshold <= pos_threshold <= 1, got {neg_threshold} and {pos_threshold}")
        self.pos_threshold = pos_threshold
        self.neg_threshold = neg_threshold
        self.allow_low_quality = allow_low_quality
        self.low_quality_min_iou = low_quality_min_iou

    def __call__(self, iou: Tensor, gt_valid: Tensor) -> Match:
        """``iou`` (B, G, N) from :func:`batched_iou`, ``gt_valid`` (B, G) bool."""
        iou = torch.where(gt_valid[..., None], iou, torch.full_like(iou, -1.0))
        max_iou, gt_index = iou.max(dim=1)
        positive = max_iou >= self.pos_threshold
        negative = (max_iou >= 0) & (max_iou < self.neg_threshold)
        # An image without objects has max_iou = -1 everywhere: all of its boxes are background.
        negative = negative | (max_iou < 0)
        if self.allow_low_quality:
            best_per_gt = iou.max(dim=2, keepdim=True).values
            reaches_best = (
                (iou == best_per_gt)
                & gt_valid[..., None]
                & (best_per_gt > 0)
                & (best_per_gt >= self.low_quality_min_iou)
            )
            gt_ids = torch.arange(1, iou.shape[1] + 1, device=iou.device).view(1, -1, 1)
            last_claim = (reaches_best * gt_ids).max(dim=1).values  # 0 = unclaimed, else gt index + 1
            claimed = last_claim > 0
            gt_index = torch.where(claimed, last_claim - 1, gt_index)
            positive = positive | claimed
        negative = negative & ~positive
        return Match(gt_index=gt_index, positive=positive, negative=negative, max_iou=max_iou)


def gather_gt(values: Tensor, gt_index: Tensor) -> Tensor:
    """Per-box copies of per-object ``values`` (B, G, ...) picked by ``gt_index`` (B, N)."""
    if values.dim() == 2:
        return torch.gather(values, 1, gt_index)
    expanded = gt_index[..., None].expand(-1, -1, values.shape[-1])
    return torch.gather(values, 1, expanded)


def sample_fixed(positive: Tensor, negative: Tensor, num_samples: int, positive_fraction: float, generator=None) -> Tensor:
    """A random subset of at most ``num_samples`` boxes per image, as a (B, N) bool mask.

    Up to ``positive_fraction * num_samples`` positives are drawn, and negatives fill the rest.
    Ranks of random keys replace the data-dependent index lists of the usual implementation,
    so no host sync is needed.
    """
    max_positives = int(num_samples * positive_fraction)
    keys = torch.rand(positive.shape, device=positive.device, generator=generator)
    pos_rank = _rank_within(keys, positive)
    neg_rank = _rank_within(keys, negative)
    take_pos = positive & (pos_rank < max_positives)
    num_pos = take_pos.sum(dim=1, keepdim=True)
    take_neg = negative & (neg_rank < num_samples - num_pos)
    return take_pos | take_neg


def _rank_within(keys: Tensor, member: Tensor) -> Tensor:
    """Rank (0 = first) of each member by its random key, among the members of its row."""
    # Non-members sort last (key 2 > any rand), so members' ranks count only members.
    masked = torch.where(member, keys, torch.full_like(keys, 2.0))
    order = masked.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return ranks
