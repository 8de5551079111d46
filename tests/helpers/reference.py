"""The eager references: plain implementations of what alwa_ext fuses, one per algorithm.

Written from the formulas and the published algorithms (not from the C++). Tests use them as
the independent reference and benchmarks as the "eager" provider (``from tests.helpers import
reference`` from the repository root); they are not part of the installed package.

- :func:`box_loss`, :func:`box_iou`: the box losses and pairwise similarities in plain PyTorch
  (autograd provides the gradients; delta coding through :mod:`alwa_ext.deltas`). Half-precision
  inputs are computed in float32, like the kernels, and the result cast back.
- :func:`sigmoid_focal_loss`: the sigmoid focal loss of RetinaNet, for classification heads.
- :func:`distribution_focal_loss`, :func:`distribution_expectation`: the DFL of Generalized Focal
  Loss and its Integral (the box decoding of YOLOv8+, GFL, TOOD heads).
- :func:`task_aligned_assign` (from :mod:`helpers.reference_assign`): the task-aligned
  assignment of TOOD / ultralytics, dense over (gts, anchors).
- :func:`alwa_published`, :func:`alwa_pooled`, :class:`PublishedStyleALWA`: ALWA as the paper's
  published training code runs it (host-side Python and NumPy), one iteration at a time.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alwa_ext.deltas import decode_deltas, encode_deltas
from alwa_ext.kinds import (
    ALWA_MODES,
    ALWA_STATISTICS,
    ALWA_UPDATES,
    DEFAULT_DELTA_MEANS,
    DEFAULT_DELTA_STDS,
    DEFAULT_WH_RATIO_CLIP,
    IOU_KINDS,
    REDUCTIONS,
)

# mmdet's eps: "mean" with avg_factor divides by avg_factor + float32's eps (written here from
# that definition, not taken from the extension, which tests check against it).
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def to_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    if box_format == "xyxy":
        return boxes
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def alpha_power(x: Tensor, alpha: float) -> Tensor:
    """x**alpha for x >= 0 (Alpha-IoU), 0 for x <= 0 with gradient 0 there (x itself for alpha = 1)."""
    if alpha == 1:
        return x
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)) ** alpha, torch.zeros_like(x))


def iou_family_loss(
    pred: Tensor, target: Tensor, kind: str, eps: float, alpha: float = 1.0, focal_gamma: float = 0.0
) -> Tensor:
    """Per-box IoU-family loss of xyxy boxes (leading shape)."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    pw, ph = torch.relu(px2 - px1), torch.relu(py2 - py1)
    tw, th = torch.relu(tx2 - tx1), torch.relu(ty2 - ty1)
    inter = torch.relu(torch.minimum(px2, tx2) - torch.maximum(px1, tx1)) * torch.relu(
        torch.minimum(py2, ty2) - torch.maximum(py1, ty1)
    )
    area_p, area_t = pw * ph, tw * th
    # = area_p + area_t - inter, summed so that nested boxes give the outer area exactly.
    union = torch.maximum(area_p, area_t) + (torch.minimum(area_p, area_t) - inter)
    iou = inter / (union + eps)
    loss = 1 - alpha_power(iou, alpha)
    if kind == "iou":
        return loss
    # The enclosing box spans every corner, so it also contains the centres of inverted boxes.
    enclose_w = torch.maximum(torch.maximum(px1, px2), torch.maximum(tx1, tx2)) - torch.minimum(
        torch.minimum(px1, px2), torch.minimum(tx1, tx2)
    )
    enclose_h = torch.maximum(torch.maximum(py1, py2), torch.maximum(ty1, ty2)) - torch.minimum(
        torch.minimum(py1, py2), torch.minimum(ty1, ty2)
    )
    if kind == "giou":
        enclose_area = enclose_w * enclose_h
        return loss + alpha_power((enclose_area - union) / (enclose_area + eps), alpha)
    dx = ((tx1 + tx2) - (px1 + px2)) / 2
    dy = ((ty1 + ty2) - (py1 + py2)) / 2
    centre_dist2 = dx.pow(2) + dy.pow(2)
    diag2 = enclose_w.pow(2) + enclose_h.pow(2) + eps
    if kind == "eiou":
        # Focal-EIoU paper: 1 - IoU + rho^2 / c^2 + (w - wg)^2 / cw^2 + (h - hg)^2 / ch^2.
        loss = (
            1
            - iou
            + centre_dist2 / diag2
            + (pw - tw).pow(2) / (enclose_w.pow(2) + eps)
            + (ph - th).pow(2) / (enclose_h.pow(2) + eps)
        )
        if focal_gamma != 0:
            loss = loss * iou.detach().pow(focal_gamma)
        return loss
    if kind == "siou":
        # the SIoU paper's (the loss grows as the boxes move apart).
        sigma = torch.linalg.vector_norm(torch.stack((dx, dy), dim=-1), dim=-1) + eps
        sin_alpha = torch.clamp(dy.abs() / sigma, max=1.0)
        angle_cost = 1 - 2 * torch.sin(torch.asin(sin_alpha) - math.pi / 4).pow(2)
        gamma = 2 - angle_cost
        distance_cost = (1 - torch.exp(-gamma * (dx / (enclose_w + eps)).pow(2))) + (
            1 - torch.exp(-gamma * (dy / (enclose_h + eps)).pow(2))
        )
        omega_w = (pw - tw).abs() / (torch.maximum(pw, tw) + eps)
        omega_h = (ph - th).abs() / (torch.maximum(ph, th) + eps)
        shape_cost = (1 - torch.exp(-omega_w)).pow(4) + (1 - torch.exp(-omega_h)).pow(4)
        return 1 - iou + (distance_cost + shape_cost) / 2
    loss = loss + alpha_power(centre_dist2 / diag2, alpha)
    if kind == "diou":
        return loss
    v = (4 / math.pi**2) * (torch.atan2(tw, th) - torch.atan2(pw, ph)).pow(2)
    with torch.no_grad():
        aspect_weight = v / (1 - iou + v + eps)
    return loss + alpha_power(aspect_weight * v, alpha)


def reduce_loss(loss: Tensor, reduction: str, avg_factor: Optional[Union[float, Tensor]]) -> Tensor:
    """mmdet's weight_reduce_loss, minus the weighting; empty inputs reduce to 0."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if avg_factor is None:
        return total / max(loss.numel(), 1)
    return total / (avg_factor + AVG_FACTOR_EPS)


def box_loss(
    pred: Tensor,
    target: Tensor,
    loss: str = "giou",
    *,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
    box_format: str = "xyxy",
    eps: float = 1e-7,
    beta: float = 1.0,
    alpha: float = 1.0,
    focal_gamma: float = 0.0,
    anchors: Optional[Tensor] = None,
    delta_means: Sequence[float] = DEFAULT_DELTA_MEANS,
    delta_stds: Sequence[float] = DEFAULT_DELTA_STDS,
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP,
) -> Tensor:
    """Eager twin of :func:`alwa_ext.box_loss` (same signature and conventions).

    With ``box_format="deltas"`` it decodes (IoU kinds) or encodes the target (L1 kinds) with
    :mod:`alwa_ext.deltas`, then proceeds as for xyxy boxes.
    """
    out_dtype = pred.dtype
    dtype = _compute_dtype(pred.dtype)
    pred, target = pred.to(dtype), target.to(dtype)
    if weight is not None:
        weight = weight.to(dtype)
    if box_format == "deltas":
        anchors = anchors.to(dtype)
        if loss in IOU_KINDS:
            pred = decode_deltas(pred, anchors, delta_means, delta_stds, wh_ratio_clip)
        else:
            target = encode_deltas(target, anchors, delta_means, delta_stds, eps=eps)
        box_format = "xyxy"
    if loss in IOU_KINDS:
        per_element = iou_family_loss(
            to_xyxy(pred, box_format), to_xyxy(target, box_format), loss, eps, alpha, focal_gamma
        )
        if weight is not None:
            per_element = per_element * (weight.mean(-1) if weight.shape == pred.shape else weight)
    else:
        diff = pred - target
        if loss == "l1":
            per_element = diff.abs()
        elif loss == "smooth_l1":
            abs_diff = diff.abs()
            per_element = torch.where(abs_diff < beta, 0.5 * diff * diff / beta, abs_diff - 0.5 * beta)
        else:
            raise ValueError(f"loss: unknown kind {loss!r}")
        if weight is not None:
            per_element = per_element * (weight if weight.shape == pred.shape else weight.unsqueeze(-1))
    if reduction == "none":
        avg_factor = None
    return reduce_loss(per_element, reduction, avg_factor).to(out_dtype)


def box_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", *, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    """Brute-force pairwise similarity: every pair through :func:`iou_family_loss`."""
    out_dtype = boxes1.dtype
    dtype = _compute_dtype(boxes1.dtype)
    a = to_xyxy(boxes1.to(dtype), box_format)[:, None, :]
    b = to_xyxy(boxes2.to(dtype), box_format)[None, :, :]
    a, b = torch.broadcast_tensors(a, b)
    return (1 - iou_family_loss(a, b, kind, eps)).to(out_dtype)


# --------------------------------------------------------------------------- sigmoid focal loss


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
) -> Tensor:
    """Sigmoid focal loss (Lin et al., RetinaNet) of ``logits`` (..., C), element by element:

        -alpha_t * (1 - p_t)**gamma * log(p_t),   p = sigmoid(logits),
        p_t = p where the target is 1 and 1 - p where it is 0, alpha_t = alpha or 1 - alpha alike,

    extended linearly to soft targets t in [0, 1] as torchvision and mmdet do
    (p_t = p t + (1 - p)(1 - t), the log term as binary cross-entropy).

    Args:
        targets: int64 class indices of shape ``logits.shape[:-1]``, where the value C is the
            background (mmdet's convention: every class is a negative there), or float targets
            of the logits' shape (torchvision's convention; soft targets allowed).
        alpha: weight of the positives in [0, 1]; None or a negative value weighs nothing
            (torchvision's ``alpha=-1``).
        weight: per anchor (``logits.shape[:-1]``) or per element (``logits.shape``).
        reduction, avg_factor: as mmdet's ``weight_reduce_loss``: ``"mean"`` divides the sum by
            the element count, or by ``avg_factor + finfo(float32).eps``; ``"sum"``; ``"none"``
            (which ignores avg_factor). avg_factor with ``"sum"`` is an error.

    Written in log-sigmoid form: log p_t and 1 - p_t come from ``logsigmoid`` and ``sigmoid`` of
    +-logits directly, never as 1 - p, so large |logits| give finite values and gradients and
    keep their relative precision. Half-precision inputs are computed in float32.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    if avg_factor is not None and reduction == "sum":
        raise ValueError("avg_factor: cannot be used with reduction='sum'")
    out_dtype = logits.dtype
    x = logits.to(_compute_dtype(logits.dtype))
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"targets: float targets need the logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}")
        t = targets.to(x.dtype)
    else:
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"targets: class indices need the shape {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}"
            )
        num_classes = logits.shape[-1]
        # One column more for the background, dropped: a background anchor is negative for all.
        t = F.one_hot(targets.long(), num_classes + 1)[..., :num_classes].to(x.dtype)
    # -log(p_t) = BCE with logits; 1 - p_t = t (1 - p) + (1 - t) p, with 1 - p = sigmoid(-x).
    neg_log_p_t = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    one_minus_p_t = t * torch.sigmoid(-x) + (1 - t) * torch.sigmoid(x)
    loss = neg_log_p_t * one_minus_p_t.pow(gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if weight is not None:
        weight = weight.to(x.dtype)
        if weight.shape == logits.shape[:-1]:
            weight = weight.unsqueeze(-1)
        elif weight.shape != logits.shape:
            raise ValueError(
                f"weight: expected shape {tuple(logits.shape[:-1])} (per anchor) or {tuple(logits.shape)} "
                f"(per element), got {tuple(weight.shape)}"
            )
        loss = loss * weight
    if reduction == "none":
        avg_factor = None
    return reduce_loss(loss, reduction, avg_factor).to(out_dtype)


# --------------------------------------------------------------------------- distribution focal loss


def distribution_focal_loss(
    pred_dist: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    avg_factor: Optional[Union[float, Tensor]] = None,
) -> Tensor:
    """Distribution focal loss (Li et al., Generalized Focal Loss) per distance, from the paper:
    cross-entropy of the softmax over the bins towards the two bins around the target,
    weighted by the target's distance to the other one:

        (r - t) * CE(pred, l) + (t - l) * CE(pred, r),   l = floor(t), r = l + 1,

    with CE(pred, n_bins - 1) alone at t = n_bins - 1 (r is then outside the bins, at weight 0).
    ``weight`` is per distance or per box (``target.shape[:-1]``); reduction and avg_factor as
    mmdet's ``weight_reduce_loss``. Half-precision inputs are computed in float32.
    """
    out_dtype = pred_dist.dtype
    x = pred_dist.to(_compute_dtype(pred_dist.dtype))
    t = target.to(x.dtype)
    bins = x.shape[-1]
    left = t.floor().clamp(max=bins - 1)
    right = left + 1
    w_left, w_right = right - t, t - left
    log_p = F.log_softmax(x, dim=-1)
    ce_left = -log_p.gather(-1, left.long().unsqueeze(-1)).squeeze(-1)
    ce_right = -log_p.gather(-1, right.long().clamp(max=bins - 1).unsqueeze(-1)).squeeze(-1)
    loss = w_left * ce_left + torch.where(right < bins, w_right * ce_right, torch.zeros_like(ce_right))
    if weight is not None:
        weight = weight.to(x.dtype)
        loss = loss * (weight if weight.shape == target.shape else weight.unsqueeze(-1))
    if reduction == "none":
        avg_factor = None
    return reduce_loss(loss, reduction, avg_factor).to(out_dtype)


def distribution_expectation(pred_dist: Tensor) -> Tensor:
    """GFL's Integral: the expectation of the softmax over the bins 0..n-1 (ultralytics' decode:
    softmax(x) @ arange(n)). Half-precision inputs are computed in float32."""
    x = pred_dist.to(_compute_dtype(pred_dist.dtype))
    bins = torch.arange(x.shape[-1], dtype=x.dtype)
    return (F.softmax(x, dim=-1) * bins).sum(-1).to(pred_dist.dtype)


# --------------------------------------------------------------------------- ALWA, as published


def _check_alwa_options(mode: str, update: str, interval: int, statistic: str = "raw") -> None:
    if mode not in ALWA_MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, ALWA_MODES))}, got {mode!r}")
    if update not in ALWA_UPDATES:
        raise ValueError(f"update: expected one of {', '.join(map(repr, ALWA_UPDATES))}, got {update!r}")
    if statistic not in ALWA_STATISTICS:
        raise ValueError(f"statistic: expected one of {', '.join(map(repr, ALWA_STATISTICS))}, got {statistic!r}")
    if interval < 2:
        raise ValueError(f"interval: expected an integer >= 2 (the std of a window has ddof 1), got {interval!r}")


# Values a window needs for its spread: the std has ddof 1, the residuals of a line ddof 2.
MIN_WINDOW_VALUES = {"raw": 2, "detrended": 3}


def _spread(values: List[float], times: List[float], statistic: str) -> float:
    """The sample std of a window (ddof 1), or the std of its residuals about the least-squares
    line over the values' times (ddof 2)."""
    if statistic == "detrended":
        slope, intercept = np.polyfit(np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64), 1)
        residuals = np.asarray(values) - (slope * np.asarray(times) + intercept)
        return math.sqrt(float(np.sum(residuals ** 2)) / (len(values) - 2))
    return np.std(values, ddof=1)


def _window_statistic(values: List[float], mode: str, statistic: str = "raw", times=None) -> float:
    """ALWA_1: mean + spread of a window, ALWA_2: its spread. `times`: each value's place in its
    window (0, 1, ...; the default), which the detrended spread fits its line over."""
    times = list(range(len(values))) if times is None else times
    spread = _spread(values, times, statistic)
    return np.mean(values) + spread if mode == "alwa1" else spread


def _reassigned_cls_weight(cls_weight: float, cls_values: List[float], reg_values: List[float], mode: str,
                           statistic: str = "raw", times=None) -> float:
    """The rule: if cls > reg, λcls = 1 - (cls - reg) / cls (an absolute assignment)."""
    cls = _window_statistic(cls_values, mode, statistic, times)
    reg = _window_statistic(reg_values, mode, statistic, times)
    return 1 - (cls - reg) / cls if cls > reg else cls_weight


class PublishedStyleALWA:
    """ALWA as the paper's published training code runs it, on the host.

    The weights are Python floats; each iteration's losses are read back to the host
    (``.item()`` when they are tensors) and appended to Python lists, the recorded values being
    the weighted losses (``update="paper"``, the published rule) or the unweighted ones
    (``update="stable"``); every ``interval`` recorded values the window statistics (NumPy, std
    with ddof = 1, or with ``statistic="detrended"`` the std of the residuals about the window's
    least-squares line over t = 0, 1, ..., ddof = 2) reassign λcls and the lists are emptied. An iteration whose losses or recorded
    values are not finite is not recorded (our extension; the published code has no such case).

    ``step(loss_cls, loss_reg)`` runs one iteration on numbers; calling the object with 0-dim
    tensors weights them by the weights in force, then steps (what a host-side training loop
    does, and what benchmarks.bench_alwa times against :class:`alwa_ext.ALWA`).
    """

    def __init__(self, mode: str = "alwa2", interval: int = 100, cls_weight: float = 1.0, reg_weight: float = 1.0,
                 update: str = "paper", statistic: str = "raw") -> None:
        _check_alwa_options(mode, update, interval, statistic)
        self.mode, self.interval, self.update, self.statistic = mode, interval, update, statistic
        self.cls_weight, self.reg_weight = float(cls_weight), float(reg_weight)
        self.cls_history: List[float] = []
        self.reg_history: List[float] = []

    def record(self, loss_cls: float, loss_reg: float) -> None:
        """Appends one iteration's recorded values to the windows (nothing if not finite)."""
        loss_cls, loss_reg = float(loss_cls), float(loss_reg)
        paper = self.update == "paper"
        cls_value = self.cls_weight * loss_cls if paper else loss_cls
        reg_value = self.reg_weight * loss_reg if paper else loss_reg
        if all(math.isfinite(v) for v in (loss_cls, loss_reg, cls_value, reg_value)):
            self.cls_history.append(cls_value)
            self.reg_history.append(reg_value)

    def close_window(self, times=None) -> None:
        """Reassigns λcls from the windows' statistics (if they hold enough values) and empties
        them."""
        if len(self.cls_history) >= MIN_WINDOW_VALUES[self.statistic]:
            self.cls_weight = _reassigned_cls_weight(self.cls_weight, self.cls_history, self.reg_history, self.mode,
                                                     self.statistic, times)
        self.cls_history, self.reg_history = [], []

    def step(self, loss_cls: float, loss_reg: float) -> None:
        """One iteration: record, and close the window once it holds ``interval`` values."""
        self.record(loss_cls, loss_reg)
        if len(self.cls_history) == self.interval:
            self.close_window()

    def __call__(self, loss_cls: Tensor, loss_reg: Tensor) -> Tuple[Tensor, Tensor]:
        weighted = loss_cls * self.cls_weight, loss_reg * self.reg_weight
        self.step(loss_cls.item(), loss_reg.item())
        return weighted


def alwa_published(cls_losses, reg_losses, *, mode: str = "alwa2", interval: int = 100, cls_weight: float = 1.0,
                   reg_weight: float = 1.0, update: str = "paper", statistic: str = "raw") -> Tuple[np.ndarray, np.ndarray]:
    """The published algorithm over whole loss sequences. Returns (applied, after): per
    iteration the [λcls, λreg] that weighted its losses and the [λcls, λreg] in force after it,
    float64 arrays of shape (n, 2)."""
    alwa = PublishedStyleALWA(mode, interval, cls_weight, reg_weight, update, statistic)
    applied, after = [], []
    for loss_cls, loss_reg in zip(cls_losses, reg_losses):
        applied.append((alwa.cls_weight, alwa.reg_weight))
        alwa.step(loss_cls, loss_reg)
        after.append((alwa.cls_weight, alwa.reg_weight))
    return np.array(applied, dtype=np.float64), np.array(after, dtype=np.float64)


def alwa_pooled(rank_cls_losses, rank_reg_losses, *, mode: str = "alwa2", interval: int = 100, cls_weight: float = 1.0,
                reg_weight: float = 1.0, update: str = "paper", statistic: str = "raw") -> np.ndarray:
    """Distributed ALWA over R ranks (rank_*_losses of shape (R, n)): every ``interval`` calls
    the values every rank recorded are pooled and the rule applied to the concatenation (in
    rank order; each value keeps its place in its rank's window as its time), if it holds
    enough values. Returns ``after`` of shape (n, 2), the same on every rank."""
    rank_cls_losses = np.asarray(rank_cls_losses, dtype=np.float64)
    rank_reg_losses = np.asarray(rank_reg_losses, dtype=np.float64)
    num_ranks, num_calls = rank_cls_losses.shape
    ranks = [PublishedStyleALWA(mode, interval, cls_weight, reg_weight, update, statistic) for _ in range(num_ranks)]
    pool = PublishedStyleALWA(mode, interval, cls_weight, reg_weight, update, statistic)
    after = []
    for call in range(num_calls):
        for rank, alwa in enumerate(ranks):
            alwa.record(rank_cls_losses[rank, call], rank_reg_losses[rank, call])
        if (call + 1) % interval == 0:
            pool.cls_history = [v for alwa in ranks for v in alwa.cls_history]
            pool.reg_history = [v for alwa in ranks for v in alwa.reg_history]
            pool.close_window(times=[t for alwa in ranks for t in range(len(alwa.cls_history))])
            for alwa in ranks:
                alwa.cls_weight = pool.cls_weight
                alwa.cls_history, alwa.reg_history = [], []
        after.append((pool.cls_weight, pool.reg_weight))
    return np.array(after, dtype=np.float64)


def pooled_windows_rule(rank_cls_values, rank_reg_values, *, mode: str = "alwa2", cls_weight: float = 1.0,
                        reg_weight: float = 1.0, statistic: str = "raw") -> np.ndarray:
    """The rule on the windows of several ranks, pooled (in rank order, each value keeping its
    place in its rank's window as its time): [λcls, λreg] after the one update."""
    pool = PublishedStyleALWA(mode, 2, cls_weight, reg_weight, "stable", statistic)
    pool.cls_history = [float(v) for values in rank_cls_values for v in values]
    pool.reg_history = [float(v) for values in rank_reg_values for v in values]
    pool.close_window(times=[t for values in rank_cls_values for t in range(len(values))])
    return np.array([pool.cls_weight, pool.reg_weight], dtype=np.float64)


from .reference_assign import task_aligned_assign  # noqa: E402  (its own module: it uses box_iou)
