"""Inputs of the task-aligned assigner as ultralytics' v8DetectionLoss passes them, for the
tests of alwa_ext.task_aligned_assign and the benchmarks."""
from __future__ import annotations

import torch

OUTPUTS = ("target_labels", "target_bboxes", "target_scores", "fg_mask", "target_gt_idx")


def grid_anchors(sizes=(16, 8, 4), strides=(8.0, 16.0, 32.0), dtype=torch.float32):
    """Anchor centres of a feature pyramid, in pixels (ultralytics' make_anchors times stride)."""
    points = []
    for size, stride in zip(sizes, strides):
        coords = (torch.arange(size, dtype=torch.float64) + 0.5) * stride
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        points.append(torch.stack((x, y), -1).reshape(-1, 2))
    return torch.cat(points).to(dtype)


def assign_case(batch=3, gts=5, classes=4, *, seed=0, dtype=torch.float32, score_dtype=None, anchors=None,
                pad=True, zero_scores=0.0, image=128.0):
    """(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt) as v8DetectionLoss
    passes them: float labels (B, n, 1), zero-padded gts, mask (B, n, 1) of floats."""
    g = torch.Generator().manual_seed(seed)
    anc = grid_anchors() if anchors is None else anchors
    A = anc.shape[0]
    scores = torch.rand(batch, A, classes, generator=g, dtype=torch.float64)
    scores[torch.rand(scores.shape, generator=g) < zero_scores] = 0
    dist = torch.rand(batch, A, 4, generator=g, dtype=torch.float64) * image / 6
    pred = torch.cat((anc.double() - dist[..., :2], anc.double() + dist[..., 2:]), -1)
    centre = torch.rand(batch, gts, 2, generator=g, dtype=torch.float64) * image
    size = torch.rand(batch, gts, 2, generator=g, dtype=torch.float64) * image / 2 + 1
    gt = torch.cat((centre - size / 2, centre + size / 2), -1)
    labels = torch.randint(0, classes, (batch, gts, 1), generator=g).double()
    mask = torch.ones(batch, gts, 1, dtype=torch.float64)
    if pad and gts:
        for b, count in enumerate(torch.randint(0, gts + 1, (batch,), generator=g).tolist()):
            mask[b, count:] = 0
            gt[b, count:] = 0
            labels[b, count:] = 0
    score_dtype = score_dtype or dtype
    return scores.to(score_dtype), pred.to(dtype), anc.to(dtype), labels.to(dtype), gt.to(dtype), mask.to(dtype)
