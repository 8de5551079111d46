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
from ._validation import FLOAT_DTYPES, check_choice
from .kinds import ALWA_MODES, ALWA_UPDATES
# Rows and fields of the `window` buffer, as in alwa_update.h.
WINDOW_SHAPE = (2, 4)  # (classification, regression) x (count, shift K, Σ(x - K), Σ(x - K)²)


# --------------------------------------------------------------------------- fake kernels


@torch.library.register_fake("alwa::alwa_step")
def _alwa_step_fake(loss_cls, loss_reg, weights, window, step, skipped, num_updates, interval, alwa_mode, update):
    return loss_cls.new_empty(()), loss_reg.new_empty(())


@torch.library.register_fake("alwa::alwa_pooled_update")
def _alwa_pooled_update_fake(rank_windows, weights, window, num_updates, alwa_mode):
    return None


# --------------------------------------------------------------------------- module


def _check_loss(name: str, loss) -> None:
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(f"{name}: expected a 0-dim tensor (sum the per-level losses first), got shape {tuple(loss.shape)}")
    if loss.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a float32, float64, float16 or bfloat16 tensor, got {loss.dtype}")


def _check_weight(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


class ALWA(nn.Module):
    """Adaptive loss weight adjustment of a classification and a regression loss.

    Args:
        mode: ``"alwa1"`` compares mean + std of the recorded windows, ``"alwa2"`` the std.
        interval: C, the number of recorded iterations per window (>= 2: the std has ddof 1).
        cls_weight, reg_weight: initial λcls and the fixed λreg (finite, > 0).
        update: ``"paper"`` records the weighted losses, as the published code does;
            ``"stable"`` records the unweighted ones, so λcls settles at reg / cls instead of
            oscillating (see the README, "ALWA").
        sync: when torch.distributed is initialized with more than one rank, pool the windows
            of all ranks at every update so every rank holds the same weights. The schedule
            is then counted on the host: every `interval` calls (see the README, "ALWA").

    Calling it returns the weighted losses ``(λcls·loss_cls, λreg·loss_reg)``, differentiable
    w.r.t. the losses, with the weights in force before this call's update.

    Buffers (``state_dict`` resumes exactly, mid-window included): ``weights`` float64
    ``[λcls, λreg]``; ``window`` float64 shifted sums (count, K, Σ(x - K), Σ(x - K)²) of the
    recorded classification and regression values, K the first value of the window; ``step``
    calls so far; ``skipped`` calls whose losses
    were not finite (not recorded); ``num_updates`` windows closed so far. They stay float64 /
    int64 under ``.half()`` or ``.to(dtype)``; ``.to(device)`` moves them, and the first call
    with losses on another device moves them there.
    """

    def __init__(
        self,
        mode: str = "alwa2",
        interval: int = 100,
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
        update: str = "paper",
        sync: bool = True,
    ) -> None:
        super().__init__()
        check_choice("mode", mode, ALWA_MODES)
        check_choice("update", update, ALWA_UPDATES)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 2:
            raise ValueError(f"interval: expected an integer >= 2 (the std of a window has ddof 1), got {interval!r}")
        _check_weight("cls_weight", cls_weight)
        _check_weight("reg_weight", reg_weight)
        self.mode = mode
        self.interval = interval
        self.update = update
        self.sync = bool(sync)
        self.register_buffer("weights", torch.tensor([float(cls_weight), float(reg_weight)], dtype=torch.float64))
        self.register_buffer("window", torch.zeros(WINDOW_SHAPE, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("skipped", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        # Calls since the last pooled update, counted on the host: it is what lets every rank
        # know, without reading a device value, when to all-gather (distributed path only).
        self._calls_in_window = 0

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, interval={self.interval}, update={self.update!r}, sync={self.sync}"

    # Pooling across ranks is decided per call, from host facts only.
    def _pools_across_ranks(self) -> bool:
        return self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, loss_cls: Tensor, loss_reg: Tensor) -> tuple[Tensor, Tensor]:
        _check_loss("loss_cls", loss_cls)
        _check_loss("loss_reg", loss_reg)
        if loss_reg.device != loss_cls.device:
            raise ValueError(f"loss_reg: expected the device of loss_cls ({loss_cls.device}), got {loss_reg.device}")
        state = self._buffers  # one dict lookup instead of five nn.Module.__getattr__ calls
        if state["weights"].device != loss_cls.device:
            # Once, on the first call: later calls find the state where the losses are.
            self.to(loss_cls.device)
        pooled = self._pools_across_ranks()
        # The op sees detached losses: the weights it returns are constants for autograd, and
        # the weighting below is an ordinary (differentiable, compilable) product.
        applied_cls, applied_reg = torch.ops.alwa.alwa_step(
            loss_cls.detach(),
            loss_reg.detach(),
            state["weights"],
            state["window"],
            state["step"],
            state["skipped"],
            state["num_updates"],
            0 if pooled else self.interval,
            self.mode,
            self.update,
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
        torch.ops.alwa.alwa_pooled_update(rank_windows, self.weights, self.window, self.num_updates, self.mode)

    # ----------------------------------------------------------------------- state

    def get_extra_state(self):
        return {"calls_in_window": self._calls_in_window}

    def set_extra_state(self, state) -> None:
        self._calls_in_window = int(state.get("calls_in_window", 0))

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
