"""Loss weighting of a detector's (classification, regression) pair: fixed weights or ALWA.

Both kinds share ALWA's calling convention: ``w_cls, w_reg = weighting(loss_cls, loss_reg)`` and
``weighting.weights`` = tensor [lambda_cls, lambda_reg], with state in buffers so checkpoints hold it.
"""
from __future__ import annotations

import torch
import torch.distributed  # noqa: F401  (make_weighting asks whether a process group is running)
from torch import Tensor, nn

import alwa_ext
from alwa_ext.kinds import ALWA_MODES, ALWA_UPDATES  # noqa: F401  (ALWA_UPDATES: the CLI's choices)

# The harness's loss weighting: fixed weights, or ALWA in one of its modes (the same names).
WEIGHTINGS = ("fixed",) + ALWA_MODES
# The spread ALWA compares: the window's std (the paper's), or the std about its trend line.
ALWA_STATISTICS = ("raw", "detrended")


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
    if statistic == "detrended":
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise ValueError("alwa_statistic: 'detrended' does not pool its windows across ranks; train it in one process")
        return DetrendedALWA(mode=kind, interval=interval, cls_weight=cls_weight, reg_weight=reg_weight, update=update)
    # "alwa1" / "alwa2" are ALWA's own mode names. Under torch.distributed it pools its windows
    # across ranks, so every rank keeps the same weights.
    return alwa_ext.ALWA(mode=kind, interval=interval, cls_weight=cls_weight, reg_weight=reg_weight, update=update)


class DetrendedALWA(nn.Module):
    """ALWA whose per-window spread is taken about the window's least-squares line, not its mean.

    Off by default (``--alwa-statistic detrended``); ``alwa_ext.ALWA`` with the paper's statistic
    stays the harness's ALWA. Why it exists (docs/experiments/README.md, measured on the study's
    logs): over a window of a loss that is still falling, the sample std is mostly the fall, not
    the noise. Classification falls faster than regression early in training, so the paper's
    first windows set λcls to a small value and, under the paper's rule, nothing raises it again.
    Everything else is the rule of ``alwa_ext.ALWA`` (same modes, ``update`` and held windows):
    ALWA_1 compares mean + detrended std, ALWA_2 the detrended std; the residual std has ddof 2
    (a line has two parameters), so a window needs 3 recorded values.

    Written in torch ops in the harness (a study option, not part of the extension's op): the
    window keeps its C values (float64 buffers), a non-finite iteration is masked out, and the
    window is closed every ``interval`` *calls*, counted on the host (as ``alwa_ext.ALWA`` does
    when it pools ranks); nothing is read back from the device. Single process only: the
    windows are not pooled across ranks. ``detrend=False`` gives the paper's statistic (the tests
    check it against ``alwa_ext.ALWA``).
    """

    def __init__(self, mode: str = "alwa2", interval: int = 100, cls_weight: float = 1.0, reg_weight: float = 1.0,
                 update: str = "paper", detrend: bool = True):
        super().__init__()
        if mode not in ALWA_MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(ALWA_MODES)}")
        if update not in ALWA_UPDATES:
            raise ValueError(f"update: {update!r} is not one of {', '.join(ALWA_UPDATES)}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 3:
            raise ValueError(f"interval: expected an integer >= 3 (a detrended window has ddof 2), got {interval!r}")
        self.mode, self.interval, self.update, self.detrend = mode, interval, update, bool(detrend)
        self.register_buffer("weights", torch.tensor([float(cls_weight), float(reg_weight)], dtype=torch.float64))
        self.register_buffer("values", torch.zeros((2, interval), dtype=torch.float64))
        self.register_buffer("recorded", torch.zeros(interval, dtype=torch.float64))  # 1 where the call was finite
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("held", torch.zeros((), dtype=torch.int64))
        self._position = 0  # calls in the open window (host count: the schedule reads no device value)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, interval={self.interval}, update={self.update!r}, detrend={self.detrend}"

    def get_extra_state(self):
        return {"position": self._position, "mode": self.mode, "interval": self.interval, "update": self.update,
                "detrend": self.detrend}

    def set_extra_state(self, state) -> None:
        for key in ("mode", "interval", "update", "detrend"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"DetrendedALWA: the state was saved with {key}={state.get(key)!r}, "
                                 f"this module has {key}={getattr(self, key)!r}")
        position = state.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < self.interval:
            raise ValueError(f"DetrendedALWA: position: expected an integer in [0, {self.interval}), got {position!r}")
        self._position = position

    def forward(self, loss_cls: Tensor, loss_reg: Tensor):
        if self.weights.device != loss_cls.device:
            self.to(loss_cls.device)
        applied = self.weights.clone()  # the weights in force weight this call's losses
        cls_value, reg_value = loss_cls.detach().double(), loss_reg.detach().double()
        if self.update == "paper":  # the published code records the weighted losses
            cls_value, reg_value = cls_value * applied[0], reg_value * applied[1]
        finite = (torch.isfinite(loss_cls.detach()) & torch.isfinite(loss_reg.detach()) & torch.isfinite(cls_value)
                  & torch.isfinite(reg_value))
        zero = cls_value.new_zeros(())
        self.values[0, self._position] = torch.where(finite, cls_value, zero)
        self.values[1, self._position] = torch.where(finite, reg_value, zero)
        self.recorded[self._position] = finite.double()
        self._position += 1
        if self._position == self.interval:
            self._close_window()
            self._position = 0
        return loss_cls * applied[0].to(loss_cls.dtype), loss_reg * applied[1].to(loss_reg.dtype)

    def statistics(self) -> Tensor:
        """The (classification, regression) statistics of the window as it stands: a tensor of 2."""
        mask = self.recorded
        count = mask.sum()
        time_index = torch.arange(self.interval, dtype=torch.float64, device=mask.device)
        mean = (self.values * mask).sum(dim=1) / count
        time_mean = (time_index * mask).sum() / count
        deviation = (self.values - mean[:, None]) * mask
        time_deviation = (time_index - time_mean) * mask
        squares = (deviation * deviation).sum(dim=1)
        if self.detrend:  # residual sum of squares about the least-squares line, ddof 2
            cross = (deviation * time_deviation).sum(dim=1)
            squares = squares - cross * cross / (time_deviation * time_deviation).sum()
            dof = count - 2
        else:
            dof = count - 1
        spread = torch.sqrt(squares.clamp(min=0) / dof)
        return mean + spread if self.mode == "alwa1" else spread

    def _close_window(self) -> None:
        cls_stat, reg_stat = self.statistics().unbind(0)
        enough = self.recorded.sum() >= (3 if self.detrend else 2)
        fires = cls_stat > reg_stat
        candidate = 1.0 - (cls_stat - reg_stat) / cls_stat  # = reg / cls, as in the paper's code
        usable = torch.isfinite(candidate) & (candidate > 0)
        self.weights[0] = torch.where(enough & fires & usable, candidate, self.weights[0])
        self.held += ((~enough) | (enough & fires & ~usable)).long()
        self.num_updates += 1
        self.values.zero_()
        self.recorded.zero_()
