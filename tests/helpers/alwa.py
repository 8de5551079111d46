"""Test data for ALWA: synthetic loss sequences, and feeding them to a module one call at a time.

The reference the ALWA tests compare with is tests/helpers/reference.py.alwa_published (and
alwa_pooled for several ranks): a NumPy transcription of the published algorithm.
"""
from __future__ import annotations

import numpy as np
import torch


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


def feed(alwa, cls_losses, reg_losses, *, device="cpu", dtype=torch.float64):
    """Feeds the sequences one iteration at a time. Returns (applied, after, returned) as
    float64 numpy arrays: the weights that weighted each iteration (returned / input), the
    weights after it, and the returned weighted losses."""
    applied, after, returned = [], [], []
    for loss_cls, loss_reg in zip(cls_losses, reg_losses):
        lc = torch.tensor(float(loss_cls), dtype=dtype, device=device)
        lr = torch.tensor(float(loss_reg), dtype=dtype, device=device)
        weighted_cls, weighted_reg = alwa(lc, lr)
        returned.append((weighted_cls.double().item(), weighted_reg.double().item()))
        with np.errstate(invalid="ignore", divide="ignore"):
            applied.append((returned[-1][0] / lc.double().item(), returned[-1][1] / lr.double().item()))
        after.append(alwa.weights.cpu().numpy().copy())
    return np.array(applied), np.array(after), np.array(returned)
