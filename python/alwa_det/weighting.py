"""Loss weighting of a detector's (classification, regression) pair: fixed weights or ALWA.

Both kinds share ALWA's calling convention: ``w_cls, w_reg = weighting(loss_cls, loss_reg)`` and
``weighting.weights`` = tensor [lambda_cls, lambda_reg], with state in buffers so checkpoints hold it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

import alwa_ext
from alwa_ext.kinds import ALWA_MODES, ALWA_STATISTICS, ALWA_UPDATES  # noqa: F401  (the CLI's choices)

# The harness's loss weighting: fixed weights, or ALWA in one of its modes (the same names).
WEIGHTINGS = ("fixed",) + ALWA_MODES


class FixedWeighting(nn.Module):
    def __init__(self, cls_weight: float = 1.0, reg_weight: float = 1.0):
        super().__init__()
        self.register_buffer("weights", torch.tensor([cls_weight, reg_weight], dtype=torch.float32))

    def forward(self, loss_cls: Tensor, loss_reg: Tensor):
        weights = self.weights.to(loss_cls.dtype)
        return loss_cls * weights[0], loss_reg * weights[1]


def make_weighting(kind: str, cls_weight: float, reg_weight: float, interval: int, update: str = "paper",
                   statistic: str = "raw") -> nn.Module:
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {kind!r}; choose one of {', '.join(WEIGHTINGS)}")
    if statistic not in ALWA_STATISTICS:
        raise ValueError(f"unknown ALWA statistic {statistic!r}; choose one of {', '.join(ALWA_STATISTICS)}")
    if kind == "fixed":
        return FixedWeighting(cls_weight, reg_weight)
    # "alwa1" / "alwa2" are ALWA's own mode names. Under torch.distributed it pools its windows
    # across ranks, so every rank keeps the same weights.
    return alwa_ext.ALWA(mode=kind, interval=interval, cls_weight=cls_weight, reg_weight=reg_weight, update=update,
                         statistic=statistic)
