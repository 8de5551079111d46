"""Loss weighting of a detector's (classification, regression) pair: fixed weights or ALWA.

Both kinds share ALWA's calling convention: ``w_cls, w_reg = weighting(loss_cls, loss_reg)`` and
``weighting.weights`` = tensor [lambda_cls, lambda_reg], with state in buffers so checkpoints hold it.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

import alwa_ext

WEIGHTINGS = ("fixed", "alwa1", "alwa2")


class FixedWeighting(nn.Module):
    def __init__(self, cls_weight: float = 1.0, reg_weight: float = 1.0):
        super().__init__()
        self.register_buffer("weights", torch.tensor([cls_weight, reg_weight], dtype=torch.float32))

    def forward(self, loss_cls: Tensor, loss_reg: Tensor):
        weights = self.weights.to(loss_cls.dtype)
        return loss_cls * weights[0], loss_reg * weights[1]


def make_weighting(kind: str, cls_weight: float, reg_weight: float, interval: int) -> nn.Module:
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {kind!r}; choose one of {', '.join(WEIGHTINGS)}")
    if kind == "fixed":
        return FixedWeighting(cls_weight, reg_weight)
    mode = kind  # "alwa1" / "alwa2", ALWA's own mode names
    if hasattr(alwa_ext, "ALWA"):
        return alwa_ext.ALWA(mode=mode, interval=interval, cls_weight=cls_weight, reg_weight=reg_weight, update="paper")
    return TemporaryALWA(mode=mode, interval=interval, cls_weight=cls_weight, reg_weight=reg_weight)


class TemporaryALWA(nn.Module):
    """TEMPORARY stand-in for ``alwa_ext.ALWA`` until it lands on main (issue 4); remove then.

    Same contract and the paper's rule: the weighted losses of each window of ``interval``
    iterations are recorded; at the end of a window, with s = mean + std (alwa1) or std (alwa2),
    ddof 1, lambda_cls = 1 - (s_cls - s_reg) / s_cls = s_reg / s_cls if s_cls > s_reg;
    lambda_reg never changes. Windows are summed in float64 on the device; the update needs no
    host sync because the window position is a host-side counter, not a tensor value. Across
    ranks the window sums are all-reduced, so every rank holds the same weights.
    """

    def __init__(self, mode: str, interval: int, cls_weight: float, reg_weight: float):
        super().__init__()
        if mode not in ("alwa1", "alwa2"):
            raise ValueError(f"unknown ALWA mode {mode!r}")
        if interval < 2:
            raise ValueError(f"ALWA interval must be at least 2 (a standard deviation needs two values), got {interval}")
        self.mode = mode
        self.interval = interval
        self.register_buffer("weights", torch.tensor([cls_weight, reg_weight], dtype=torch.float32))
        # Rows: cls, reg; columns: count, sum, sum of squares.
        self.register_buffer("window", torch.zeros(2, 3, dtype=torch.float64))
        self.register_buffer("recorded", torch.zeros((), dtype=torch.long))
        self._recorded_host = 0

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._recorded_host = int(self.recorded)  # once, at resume: not in the training step

    def forward(self, loss_cls: Tensor, loss_reg: Tensor):
        # A copy: the update below rewrites the buffer in place, and autograd keeps these factors.
        weights = self.weights.to(loss_cls.dtype, copy=True)
        weighted_cls = loss_cls * weights[0]
        weighted_reg = loss_reg * weights[1]
        values = torch.stack([weighted_cls.detach(), weighted_reg.detach()]).double()
        self.window += torch.stack([torch.ones_like(values), values, values * values], dim=1)
        self.recorded += 1
        self._recorded_host += 1
        if self._recorded_host % self.interval == 0:
            self._update()
        return weighted_cls, weighted_reg

    def _update(self):
        window = self.window.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(window)
        count, total, squares = window.unbind(dim=1)
        mean = total / count
        std = ((squares - total * mean) / (count - 1)).clamp(min=0).sqrt()
        spread = mean + std if self.mode == "alwa1" else std
        cls_spread, reg_spread = spread.unbind()
        new_cls_weight = 1 - (cls_spread - reg_spread) / cls_spread
        self.weights[0] = torch.where(cls_spread > reg_spread, new_cls_weight.float(), self.weights[0])
        self.window.zero_()
