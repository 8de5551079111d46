"""The task-aligned assignment (TOOD; ultralytics' ``TaskAlignedAssigner``) as one fused op."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import ops  # noqa: F401  (fake kernels)

_task_aligned_assign = torch.ops.alwa.task_aligned_assign.default


def task_aligned_assign(
    pd_scores: Tensor,
    pd_bboxes: Tensor,
    anc_points: Tensor,
    gt_labels: Tensor,
    gt_bboxes: Tensor,
    mask_gt: Tensor,
    *,
    topk: int = 13,
    topk2: Optional[int] = None,
    alpha: float = 1.0,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_side: float = 0.0,
    logits: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Assigns every anchor a target, as ultralytics' ``TaskAlignedAssigner`` does, in one op.

    Per image: a gt box's candidates are the anchors whose centre lies inside it (the box
    widened to at least ``min_side`` along each axis about its centre: ultralytics' ``stride_val``,
    the middle stride, in ``v8DetectionLoss``); their alignment metric is
    ``score(label)**alpha * CIoU(gt, pred).clamp(0)**beta``; each gt takes its ``topk`` anchors
    by metric, an anchor taken by several goes to the gt it overlaps most, and with ``topk2`` each
    gt keeps its best ``topk2`` (YOLO26's one-to-one branch: ``topk=7, topk2=1``). Only the
    anchors inside a gt are scored, and nothing of shape (batch, gts, anchors) is made.
    The conventions, the tie rule and where results can differ from ultralytics: docs/api.md.

    Args:
        pd_scores: (B, A, C) class scores in [0, 1] (sigmoid of the logits), any float dtype.
        pd_bboxes: (B, A, 4) predicted boxes, x1 y1 x2 y2, in the units of the gts (pixels).
        anc_points: (A, 2) anchor centres, x y, in the same units.
        gt_labels: (B, n, 1) or (B, n) class indices (floats are truncated, as ``.long()``);
            those of the boxes ``mask_gt`` marks must be in [0, C).
        gt_bboxes: (B, n, 4) gt boxes, x1 y1 x2 y2, padded per image.
        mask_gt: (B, n, 1) or (B, n), nonzero for the real boxes (the others are padding).
        topk, topk2: anchors taken per gt (``1 <= topk, topk2 <= A``); ``topk2=None`` means no
            second selection.
        alpha, beta: the metric's powers (>= 0); ultralytics' detection loss uses 0.5 and 6.
        eps: added to each gt's largest metric before normalising (> 0).
        logits: ``pd_scores`` holds logits; the op takes the sigmoid of the few it reads (the
            inside candidates'), instead of the caller taking it of all B x A x C.

    Returns:
        ``(target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx)``: (B, A) int64
        (a background anchor has gt 0's label, as in ultralytics), (B, A, 4) in gt_bboxes' dtype,
        (B, A, C) in the promoted dtype of the scores and boxes, (B, A) bool, (B, A) int64.
        With n = 0: labels C, zeros, no foreground. No gradient flows through the assignment.
        No host sync: a CUDA call checks the labels on the device (a device-side assert).
    """
    return _task_aligned_assign(
        pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, topk, topk if topk2 is None else topk2,
        alpha, beta, eps, min_side, logits,
    )
