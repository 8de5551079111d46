"""Greedy non-maximum suppression in plain tensor ops, with fixed shapes.

``nms_keep_mask`` walks the score-sorted candidates once, in a loop whose length is the static
candidate count: each step drops the later boxes that the current box suppresses if it is itself
kept. It gives exactly the classic greedy result, needs no host sync (so it can run inside the
training step for RPN proposals), and the same function serves inference.
"""
from __future__ import annotations

import torch
from torch import Tensor

import alwa_ext


def nms_keep_mask(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    """Which of the (B, K) candidates greedy NMS keeps.

    ``boxes`` (B, K, 4) xyxy, ``scores`` (B, K), ``valid`` (B, K) bool (invalid candidates are
    never kept and suppress nothing). A box is suppressed by a kept, higher-scoring box whose IoU
    with it exceeds ``iou_threshold``; ties keep the lower index first.
    """
    batch, count = scores.shape
    keep_sorted = torch.zeros_like(valid)
    if count == 0:
        return keep_sorted
    sort_key = torch.where(valid, scores, torch.full_like(scores, float("-inf")))
    order = sort_key.argsort(dim=1, descending=True, stable=True)
    sorted_boxes = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
    keep_sorted = torch.gather(valid, 1, order)
    with torch.no_grad():
        iou = torch.stack([alwa_ext.box_iou(sorted_boxes[i], sorted_boxes[i]) for i in range(batch)])
        # Only earlier (higher-scoring) boxes can suppress later ones.
        earlier = torch.ones(count, count, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
        suppresses = (iou > iou_threshold) & earlier
        for i in range(count - 1):
            suppressed_now = suppresses[:, i, i + 1 :] & keep_sorted[:, i : i + 1]
            keep_sorted[:, i + 1 :] &= ~suppressed_now
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(1, order, keep_sorted)
    return keep


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """Class-wise NMS of one image's (N, 4) boxes: indices kept, highest score first.

    Boxes of different classes are moved apart (offset by class id times the coordinate span) so
    that a single pass never lets one class suppress another.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    shifted = boxes + (classes.to(boxes.dtype) * span)[:, None]
    valid = torch.ones_like(scores, dtype=torch.bool)
    keep = nms_keep_mask(shifted[None], scores[None], valid[None], iou_threshold)[0]
    kept = torch.nonzero(keep).flatten()  # inference only: a variable-length result is the point
    return kept[scores[kept].argsort(descending=True, stable=True)]
