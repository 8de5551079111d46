"""Plain NumPy transcriptions of ALWA, the independent references of the ALWA tests.

`published_alwa` follows the algorithm of the paper's published training code step by step:
Python lists of the recorded (weighted) losses, np.mean / np.std(ddof=1) every C recorded
values, the absolute reassignment of λcls, the lists emptied. Our extensions are switched on
by arguments whose defaults leave that algorithm unchanged: non-finite iterations are not
recorded, and update="stable" records the unweighted losses.

`pooled_alwa` is the distributed extension: every C calls the windows of all ranks are
concatenated and the same rule applied to the concatenation.
"""
from __future__ import annotations

import math

import numpy as np


def _statistic(values, mode):
    mean = np.mean(values)
    std = np.std(values, ddof=1)
    return mean + std if mode == "alwa1" else std


def _rule(cls_weight, cls, reg):
    if cls > reg:
        return 1 - (cls - reg) / cls
    return cls_weight


def _recorded(loss, weight, update):
    return weight * loss if update == "paper" else loss


def _finite(*values):
    return all(math.isfinite(v) for v in values)


def published_alwa(cls_losses, reg_losses, *, mode="alwa2", interval=100, cls_weight=1.0, reg_weight=1.0, update="paper"):
    """Returns (applied, after): per iteration the [λcls, λreg] that weighted its losses and
    the [λcls, λreg] in force after it, both float64 arrays of shape (n, 2)."""
    cls_history, reg_history = [], []
    applied, after = [], []
    for loss_cls, loss_reg in zip(map(float, cls_losses), map(float, reg_losses)):
        applied.append((cls_weight, reg_weight))
        cls_value = _recorded(loss_cls, cls_weight, update)
        reg_value = _recorded(loss_reg, reg_weight, update)
        if _finite(loss_cls, loss_reg, cls_value, reg_value):
            cls_history.append(cls_value)
            reg_history.append(reg_value)
            if len(cls_history) % interval == 0:
                cls_weight = _rule(cls_weight, _statistic(cls_history, mode), _statistic(reg_history, mode))
                cls_history, reg_history = [], []
        after.append((cls_weight, reg_weight))
    return np.array(applied, dtype=np.float64), np.array(after, dtype=np.float64)


def pooled_alwa(rank_cls_losses, rank_reg_losses, *, mode="alwa2", interval=100, cls_weight=1.0, reg_weight=1.0, update="paper"):
    """Distributed ALWA over R ranks: rank_*_losses have shape (R, n). Every `interval` calls
    the recorded values of all ranks are pooled. Returns `after` of shape (n, 2), the same on
    every rank."""
    rank_cls_losses = np.asarray(rank_cls_losses, dtype=np.float64)
    rank_reg_losses = np.asarray(rank_reg_losses, dtype=np.float64)
    num_ranks, num_calls = rank_cls_losses.shape
    cls_pool, reg_pool = [], []
    after = []
    for call in range(num_calls):
        for rank in range(num_ranks):
            loss_cls, loss_reg = rank_cls_losses[rank, call], rank_reg_losses[rank, call]
            cls_value = _recorded(loss_cls, cls_weight, update)
            reg_value = _recorded(loss_reg, reg_weight, update)
            if _finite(loss_cls, loss_reg, cls_value, reg_value):
                cls_pool.append(cls_value)
                reg_pool.append(reg_value)
        if (call + 1) % interval == 0:
            if len(cls_pool) >= 2:
                cls_weight = _rule(cls_weight, _statistic(cls_pool, mode), _statistic(reg_pool, mode))
            cls_pool, reg_pool = [], []
        after.append((cls_weight, reg_weight))
    return np.array(after, dtype=np.float64)


def loss_sequences(kind: str, n: int, seed: int = 0):
    """Synthetic (cls, reg) loss sequences, float64 numpy arrays of length n."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    if kind == "decaying":  # cls falls faster than reg, as the paper observes in detectors
        cls = 1.5 * np.exp(-t / 400) + 0.2 + 0.15 * rng.standard_normal(n) * np.exp(-t / 800)
        reg = 0.6 * np.exp(-t / 1500) + 0.1 + 0.05 * rng.standard_normal(n)
    elif kind == "stationary":
        cls = 2.0 + 0.4 * rng.standard_normal(n)
        reg = 0.5 + 0.1 * rng.standard_normal(n)
    elif kind == "reg_dominant":  # the rule must not fire: cls statistic below reg's
        cls = 0.3 + 0.01 * rng.standard_normal(n)
        reg = 1.0 + 0.3 * rng.standard_normal(n)
    elif kind == "large_mean":  # cancellation test: naive Σx² - n·mean² loses every digit
        cls = 1e7 + 1e-2 * rng.standard_normal(n)
        reg = 1e7 + 1e-3 * rng.standard_normal(n)
    else:
        raise ValueError(kind)
    return np.abs(cls), np.abs(reg)
