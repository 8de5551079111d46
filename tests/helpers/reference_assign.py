"""The task-aligned assignment (Feng et al., TOOD; ultralytics' ``TaskAlignedAssigner``) in
plain PyTorch, dense over (gts, anchors) image by image: the reference of
``alwa_ext.task_aligned_assign``, written from the algorithm as docs/api.md states it (not from
the C++). The overlap is :func:`helpers.reference.box_iou`'s CIoU; the top-k is a stable sort,
so equal metrics go in anchor order (the documented tie rule). Reached as
``helpers.reference.task_aligned_assign``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

INSIDE_EPS = 1e-9  # ultralytics' margin of the inside test
OVERLAP_EPS = 1e-7  # and bbox_iou's eps


def candidate_regions(gt: Tensor, min_side: float) -> Tensor:
    """ultralytics' widened boxes: xyxy -> centre and size, sizes floored at min_side, back."""
    centre = (gt[:, :2] + gt[:, 2:]) / 2
    size = gt[:, 2:] - gt[:, :2]
    size = torch.where(size < min_side, torch.full_like(size, min_side), size)
    half = size / 2
    return torch.cat((centre - half, centre + half), 1)


def top_in_anchor_order(values: Tensor, k: int) -> Tensor:
    """(rows, A) -> (rows, A) bool: each row's k largest values, NaN above every number, equal
    ones in anchor order (torch.sort, descending and stable, keeps equal keys in index order and
    puts NaN first)."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    taken = torch.zeros(values.shape, dtype=torch.bool)
    taken.scatter_(1, order[:, :k], True)
    return taken


def first_true(mask: Tensor, dim: int) -> Tensor:
    """Index of the first True along dim (0 where there is none)."""
    return mask.to(torch.uint8).argmax(dim)


def assign_image(scores, pred, anchors, labels, gt, valid, topk, topk2, alpha, beta, eps, min_side):
    from .reference import box_iou

    n, num_anchors, num_classes = gt.shape[0], pred.shape[0], scores.shape[1]
    region = candidate_regions(gt, min_side)
    ax, ay = anchors[:, 0][None], anchors[:, 1][None]
    inside = ((ax - region[:, 0:1] > INSIDE_EPS) & (ay - region[:, 1:2] > INSIDE_EPS)
              & (region[:, 2:3] - ax > INSIDE_EPS) & (region[:, 3:4] - ay > INSIDE_EPS))
    inside &= valid[:, None]
    overlap = box_iou(gt, pred, "ciou", eps=OVERLAP_EPS).clamp(min=0)
    score = scores[:, labels.clamp(0, num_classes - 1)].T  # (n, A)
    metric = torch.where(inside, score.pow(alpha) * overlap.pow(beta), torch.zeros_like(overlap))
    overlap = torch.where(inside, overlap, torch.zeros_like(overlap))
    pos = top_in_anchor_order(metric, topk) & inside
    # An anchor of several gts: the gt of the largest overlap (NaN first, then the lowest index).
    nan = overlap.isnan()
    best = torch.where(nan.any(0), first_true(nan, 0), first_true(overlap == overlap.max(0).values, 0))
    several = pos.sum(0) > 1
    pos = torch.where(several[None], torch.arange(n)[:, None] == best[None], pos)
    if topk2 != topk:
        pos &= top_in_anchor_order(torch.where(pos, metric, torch.zeros_like(metric)), topk2)
    fg = pos.any(0)
    gt_idx = first_true(pos, 0)
    masked_metric = torch.where(pos, metric, torch.zeros_like(metric))
    masked_overlap = torch.where(pos, overlap, torch.zeros_like(overlap))
    max_metric = masked_metric.amax(1) if num_anchors else torch.zeros(n, dtype=metric.dtype)
    max_overlap = masked_overlap.amax(1) if num_anchors else torch.zeros(n, dtype=metric.dtype)
    norm = masked_metric * max_overlap[:, None] / (max_metric[:, None] + eps)
    norm = norm.gather(0, gt_idx[None])[0]
    if n > 1:
        norm = torch.where(norm < 0, torch.zeros_like(norm), norm)
    target_labels = labels[gt_idx].clamp(min=0)
    target_scores = torch.zeros(num_anchors, num_classes, dtype=metric.dtype)
    rows = fg.nonzero()[:, 0]
    target_scores[rows, target_labels[rows]] = norm[rows]
    return target_labels, gt[gt_idx], target_scores, fg, gt_idx


def task_aligned_assign(
    pd_scores: Tensor, pd_bboxes: Tensor, anc_points: Tensor, gt_labels: Tensor, gt_bboxes: Tensor,
    mask_gt: Tensor, *, topk: int = 13, topk2: Optional[int] = None, alpha: float = 1.0, beta: float = 6.0,
    eps: float = 1e-9, min_side: float = 0.0, logits: bool = False,
):
    """The five outputs of ``alwa_ext.task_aligned_assign`` for the same arguments, on the CPU,
    computed in float64 where the scores or the boxes are, else in float32."""
    topk2 = topk if topk2 is None else topk2
    if logits:
        pd_scores = pd_scores.sigmoid()
    batch, num_anchors, num_classes = pd_scores.shape
    n = gt_bboxes.shape[1]
    wide = torch.float64 in (pd_scores.dtype, pd_bboxes.dtype, gt_bboxes.dtype)
    dtype = torch.float64 if wide else torch.float32
    if n == 0:
        return (torch.full((batch, num_anchors), num_classes), torch.zeros(batch, num_anchors, 4, dtype=gt_bboxes.dtype),
                torch.zeros(batch, num_anchors, num_classes, dtype=torch.promote_types(pd_scores.dtype, pd_bboxes.dtype)),
                torch.zeros(batch, num_anchors, dtype=torch.bool), torch.zeros(batch, num_anchors, dtype=torch.long))
    labels = gt_labels.reshape(batch, n).long()
    valid = mask_gt.reshape(batch, n) != 0
    outs = [assign_image(pd_scores[b].to(dtype), pd_bboxes[b].to(dtype), anc_points.to(dtype), labels[b],
                         gt_bboxes[b].to(dtype), valid[b], topk, topk2, alpha, beta, eps, min_side)
            for b in range(batch)]
    labels_out, boxes, scores, fg, gt_idx = (torch.stack(x) for x in zip(*outs))
    return (labels_out, boxes.to(gt_bboxes.dtype), scores.to(torch.promote_types(pd_scores.dtype, pd_bboxes.dtype)),
            fg, gt_idx)
