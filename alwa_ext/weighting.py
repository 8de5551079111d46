"""ALWA: adaptive loss weight adjustment ("Revisiting the Loss Weight Adjustment in Object
Detection"), with its running statistics kept on the device.

Each call weights the classification and regression losses by the weights in force,
records them and, every `interval` recorded iterations, reassigns the classification weight
from the window statistics (see csrc/include/alwa/alwa_update.h for the rule). All of it is
one call of the fused op ``torch.ops.alwa.alwa_step``: no ``.item()``, no Python branch on a
tensor value, so a training step can run under ``torch.cuda.set_sync_debug_mode("error")``,
be captured in a CUDA graph, or be compiled with ``torch.compile(fullgraph=True)``.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import _C  # noqa: F401  (registers torch.ops.alwa)
from ._validation import check_choice
from .kinds import ALWA_MODES, ALWA_STATISTICS, ALWA_UPDATES, ALWA_WINDOW_SHAPE

# (classification, regression) x (count, shift K, Σ(x - K), Σ(x - K)², Σ(x - K)·t), alwa_update.h.
WINDOW_SHAPE = ALWA_WINDOW_SHAPE
# The window of states saved before the detrended statistic: the first four fields (the fifth,
# Σ(x - K)·t, only the detrended statistic reads; such a state is always "raw").
_FOUR_FIELD_WINDOW = (WINDOW_SHAPE[0], 4)
# The int64 counters among the buffers.
COUNTERS = ("step", "skipped", "num_updates", "held")

_alwa_step = torch.ops.alwa.alwa_step.default
_alwa_pooled_update = torch.ops.alwa.alwa_pooled_update.default


# --------------------------------------------------------------------------- fake kernels


@torch.library.register_fake("alwa::alwa_step")
def _alwa_step_fake(loss_cls, loss_reg, weights, window, step, skipped, num_updates, held, interval, alwa_mode, update,
                    statistic):
    return loss_cls.new_empty(()), loss_reg.new_empty(())


@torch.library.register_fake("alwa::alwa_pooled_update")
def _alwa_pooled_update_fake(rank_windows, weights, window, num_updates, held, alwa_mode, statistic):
    return None


# --------------------------------------------------------------------------- module


def _check_weight(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


class ALWA(nn.Module):
    """Adaptive loss weight adjustment of a classification and a regression loss.

    Args:
        mode: ``"alwa1"`` compares mean + spread of the recorded windows, ``"alwa2"`` the spread.
        interval: C, the number of recorded iterations per window (>= 2: the std has ddof 1;
            >= 3 with ``statistic="detrended"``, ddof 2).
        cls_weight, reg_weight: initial λcls and the fixed λreg (finite, > 0).
        update: ``"paper"`` records the weighted losses, as the published code does;
            ``"stable"`` records the unweighted ones, so λcls settles at reg / cls instead of
            oscillating (docs/alwa.md).
        statistic: the spread of a window: ``"raw"``, its sample std (the paper's); or
            ``"detrended"``, the std of its residuals about the least-squares line over the
            recorded iterations, so a loss still falling is not taken for noise (docs/alwa.md).
        sync: when torch.distributed is initialized with more than one rank, pool the windows
            of all ranks at every update so every rank holds the same weights. The schedule
            is then counted on the host: every `interval` calls (docs/alwa.md).

    Calling it returns the weighted losses ``(λcls·loss_cls, λreg·loss_reg)``, differentiable
    w.r.t. the losses, with the weights in force before this call's update.

    Buffers (``state_dict`` resumes exactly, mid-window included): ``weights`` float64
    ``[λcls, λreg]``; ``window`` float64 shifted sums (count, K, Σ(x - K), Σ(x - K)²,
    Σ(x - K)·t) of the recorded classification and regression values, K the first value of the
    window and t a value's place in it; ``step``
    calls so far; ``skipped`` calls whose losses were not finite (not recorded);
    ``num_updates`` windows closed so far; ``held`` those of them that left λcls as it was for
    want of a usable statistic (a regression statistic of 0, e.g. a window of images without
    objects, where the published rule would set λcls to 0 for good). They stay float64 / int64
    under ``.half()`` or ``.to(dtype)``; ``.to(device)`` moves them, and the first call with
    losses on another device moves them there. ``load_state_dict`` refuses a state that is not
    a valid ALWA state, or one saved with another mode, interval, update or statistic (a state
    saved before the statistic existed loads as a "raw" one).
    """

    def __init__(
        self,
        mode: str = "alwa2",
        interval: int = 100,
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
        update: str = "paper",
        sync: bool = True,
        statistic: str = "raw",
    ) -> None:
        super().__init__()
        check_choice("mode", mode, ALWA_MODES)
        check_choice("update", update, ALWA_UPDATES)
        check_choice("statistic", statistic, ALWA_STATISTICS)
        least = 3 if statistic == "detrended" else 2
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < least:
            why = "a detrended window has ddof 2" if least == 3 else "the std of a window has ddof 1"
            raise ValueError(f"interval: expected an integer >= {least} ({why}), got {interval!r}")
        _check_weight("cls_weight", cls_weight)
        _check_weight("reg_weight", reg_weight)
        self.mode = mode
        self.interval = interval
        self.update = update
        self.statistic = statistic
        self.sync = bool(sync)
        self.register_buffer("weights", torch.tensor([float(cls_weight), float(reg_weight)], dtype=torch.float64))
        self.register_buffer("window", torch.zeros(WINDOW_SHAPE, dtype=torch.float64))
        for name in COUNTERS:
            self.register_buffer(name, torch.zeros((), dtype=torch.int64))
        # Calls since the last pooled update, counted on the host: it is what lets every rank
        # know, without reading a device value, when to all-gather (distributed path only).
        self._calls_in_window = 0

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, interval={self.interval}, update={self.update!r}, statistic={self.statistic!r}, "
                f"sync={self.sync}")

    # Pooling across ranks is decided per call, from host facts only.
    def _pools_across_ranks(self) -> bool:
        return self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, loss_cls: Tensor, loss_reg: Tensor) -> tuple[Tensor, Tensor]:
        # The op checks shapes, dtypes and devices; only a non-tensor would fail before it.
        if not isinstance(loss_cls, Tensor) or not isinstance(loss_reg, Tensor):
            name, value = ("loss_cls", loss_cls) if not isinstance(loss_cls, Tensor) else ("loss_reg", loss_reg)
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
        state = self._buffers  # one dict lookup instead of six nn.Module.__getattr__ calls
        if state["weights"].device != loss_cls.device:
            # Once, on the first call: later calls find the state where the losses are.
            self.to(loss_cls.device)
        pooled = self._pools_across_ranks()
        # The op sees detached losses: the weights it returns are constants for autograd, and
        # the weighting below is an ordinary (differentiable, compilable) product.
        applied_cls, applied_reg = _alwa_step(
            loss_cls.detach(),
            loss_reg.detach(),
            state["weights"],
            state["window"],
            state["step"],
            state["skipped"],
            state["num_updates"],
            state["held"],
            0 if pooled else self.interval,
            self.mode,
            self.update,
            self.statistic,
        )
        if pooled:
            self._count_call_and_pool()
        return loss_cls * applied_cls, loss_reg * applied_reg

    @torch.compiler.disable
    def _count_call_and_pool(self) -> None:
        self._calls_in_window += 1
        if self._calls_in_window < self.interval:
            return
        self._calls_in_window = 0
        world = dist.get_world_size()
        rank_windows = self.window.new_empty((world,) + WINDOW_SHAPE)
        # The list form works with every backend (gloo included); the outputs are views of
        # rank_windows, so the gathered windows land in it in rank order.
        dist.all_gather(list(rank_windows.unbind(0)), self.window)
        _alwa_pooled_update(rank_windows, self.weights, self.window, self.num_updates, self.held, self.mode,
                            self.statistic)

    # ----------------------------------------------------------------------- state

    def get_extra_state(self):
        # The configuration travels with the state: a state only means something for the mode,
        # interval, update and statistic that produced it.
        return {"calls_in_window": self._calls_in_window, "mode": self.mode, "interval": self.interval,
                "update": self.update, "statistic": self.statistic}

    def set_extra_state(self, state) -> None:
        self._calls_in_window = int(state.get("calls_in_window", 0))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Loading is not the training path: reading the values here costs nothing that matters.
        state_dict = _upgraded(state_dict, prefix)
        errors = _state_errors(self, state_dict, prefix)
        if errors:
            error_msgs.extend(errors)
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _apply(self, fn, recurse=True):
        # nn.Module.half()/.to(dtype) would cast the float64 statistics and the weights: keep
        # what fn does to a buffer (device moves, share_memory_) unless it changes the dtype,
        # and then take only its device.
        for name, buffer in self._buffers.items():
            if buffer is None:
                continue
            out = fn(buffer)
            self._buffers[name] = out if out.dtype == buffer.dtype else buffer.to(out.device)
        return self


def _upgraded(state_dict, prefix: str):
    """A state saved by an earlier version, in today's layout: no `held` (none held), a window
    of four fields (the fifth, zero, is read by the detrended statistic only, which such a
    state never had)."""
    window = state_dict.get(prefix + "window")
    old_window = isinstance(window, Tensor) and tuple(window.shape) == _FOUR_FIELD_WINDOW
    if prefix + "held" in state_dict and not old_window:
        return state_dict
    state_dict = dict(state_dict)
    if prefix + "held" not in state_dict:
        state_dict[prefix + "held"] = torch.zeros((), dtype=torch.int64)
    extra = state_dict.get(prefix + "_extra_state")
    if old_window and (not isinstance(extra, dict) or extra.get("statistic", "raw") == "raw"):
        state_dict[prefix + "window"] = torch.cat([window, window.new_zeros((WINDOW_SHAPE[0], 1))], dim=1)
    return state_dict


def _state_errors(alwa: ALWA, state_dict, prefix: str) -> list:
    """What makes `state_dict` (at `prefix`) no state of `alwa`; empty when it is one."""
    errors = []
    extra = state_dict.get(prefix + "_extra_state", {})
    if not isinstance(extra, dict):
        return [f"ALWA: _extra_state: expected a dict, got {type(extra).__name__}"]
    calls = extra.get("calls_in_window", 0)
    if isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls < alwa.interval:
        errors.append(f"ALWA: _extra_state['calls_in_window']: expected an integer in [0, {alwa.interval}), got {calls!r}")
    # (a state saved before the statistic existed is a "raw" one)
    saved = {"statistic": "raw", **{key: extra[key] for key in ("mode", "interval", "update", "statistic") if key in extra}}
    for key, value in saved.items():
        if value != getattr(alwa, key):
            errors.append(f"ALWA: the state was saved with {key}={value!r}, this module has {key}={getattr(alwa, key)!r}")

    def tensor(name, dtype, shape):
        value = state_dict.get(prefix + name)
        if value is None:
            return None
        if not isinstance(value, Tensor) or value.dtype != dtype or tuple(value.shape) != shape:
            errors.append(f"ALWA: {name}: expected a {dtype} tensor of shape {shape}, got {value!r:.80}")
            return None
        return value.detach().cpu()

    weights = tensor("weights", torch.float64, (2,))
    if weights is not None and not (torch.isfinite(weights).all() and (weights > 0).all()):
        errors.append(f"ALWA: weights: expected finite numbers > 0, got {weights.tolist()}")
    window = tensor("window", torch.float64, WINDOW_SHAPE)
    if window is not None:
        counts = window[:, 0]
        if not torch.isfinite(window).all():
            errors.append(f"ALWA: window: expected finite numbers, got {window.tolist()}")
        elif not ((counts >= 0) & (counts == counts.round()) & (counts < alwa.interval)).all() or counts[0] != counts[1]:
            errors.append(f"ALWA: window: expected equal whole counts in [0, {alwa.interval}), got {counts.tolist()}")
    for name in COUNTERS:
        value = tensor(name, torch.int64, ())
        if value is not None and value < 0:
            errors.append(f"ALWA: {name}: expected a count >= 0, got {value.item()}")
    return errors
