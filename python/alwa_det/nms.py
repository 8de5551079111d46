"""Greedy non-maximum suppression in plain tensor ops, with fixed shapes.

``nms_keep_mask`` walks the score-sorted candidates once, in a loop whose length is the static
candidate count: each step drops the later boxes that the current box suppresses if it is itself
kept. It gives exactly the classic greedy result, needs no host sync (so it can run inside the
training step for RPN proposals). Inference, where a variable-length answer is wanted anyway,
uses ``nms_indices``, which visits only the survivors and stops at the detection cap.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
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


def nms_indices(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: Optional[int] = None) -> Tensor:
    """Greedy NMS of one set of (N, 4) boxes for inference: indices kept, highest score first.

    Variable-length output, so it may sync: it sorts once, computes the IoU matrix once, and
    then visits only the surviving boxes, stopping after ``max_keep`` of them. Same result as
    ``nms_keep_mask`` (ties: lower index first).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    iou = alwa_ext.box_iou(boxes[order], boxes[order]).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(position)
        if max_keep is not None and len(kept) >= max_keep:
            break
        suppressed |= iou[position] > iou_threshold
    return order[torch.as_tensor(kept, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float, max_keep: Optional[int] = None) -> Tensor:
    """Class-wise NMS of one image's (N, 4) boxes for inference: indices kept, highest score first.

    Boxes of different classes are moved apart (offset by class id times the coordinate span) so
    that a single pass never lets one class suppress another.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    shifted = boxes + (classes.to(boxes.dtype) * span)[:, None]
    return nms_indices(shifted, scores, iou_threshold, max_keep)
