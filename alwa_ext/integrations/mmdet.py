"""mmdetection (mmengine) integration: registered loss modules and an ALWA hook.

- :func:`register` puts the ``alwa_ext.nn`` loss modules, under ``Alwa``-prefixed names
  (mmdet owns the plain ones: ``AlwaGIoULoss``, ``AlwaCIoULoss``, ...), and :class:`ALWAHook`
  into mmdet's ``MODELS`` / ``HOOKS`` registries, or into the mmengine registries given.
  Importing this module registers into mmdet's when mmdet is importable, so a config needs
  only ``custom_imports = dict(imports=["alwa_ext.integrations.mmdet"])``.
- :class:`ALWAHook` weights the model's classification and regression losses with
  :class:`alwa_ext.ALWA` at every training iteration, and keeps ALWA's state in the
  checkpoints (``before_save_checkpoint`` / ``after_load_checkpoint``).

Importing this module imports mmengine (not mmdet).
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import Dict, List, Optional

from torch import Tensor

from .. import nn as alwa_nn
from ..weighting import ALWA
from ._common import import_framework

import_framework("mmengine", "alwa_ext.integrations.mmdet", "pip install mmengine")

from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.registry import Registry  # noqa: E402

# mmdet already registers IoULoss, GIoULoss, ... (different formulas: see docs/api.md, "Conventions"), hence
# the prefix.
LOSS_MODULES = {
    "AlwaBoxLoss": alwa_nn.BoxLoss,
    "AlwaIoULoss": alwa_nn.IoULoss,
    "AlwaGIoULoss": alwa_nn.GIoULoss,
    "AlwaDIoULoss": alwa_nn.DIoULoss,
    "AlwaCIoULoss": alwa_nn.CIoULoss,
    "AlwaEIoULoss": alwa_nn.EIoULoss,
    "AlwaSIoULoss": alwa_nn.SIoULoss,
    "AlwaL1Loss": alwa_nn.L1Loss,
    "AlwaSmoothL1Loss": alwa_nn.SmoothL1Loss,
    "AlwaSigmoidFocalLoss": alwa_nn.SigmoidFocalLoss,
    "AlwaDistributionFocalLoss": alwa_nn.DistributionFocalLoss,
}
HOOK_NAME = "ALWAHook"
# The checkpoint entry: {"<cls_key>/<reg_key>": {"config": ..., "state": ALWA.state_dict()}},
# one item per hook, so an RPN hook and a head hook can live side by side.
CHECKPOINT_KEY = "alwa"


def _reduce_like_parse_losses(name: str, value) -> Tensor:
    # mmengine's BaseModel.parse_losses: a tensor counts as its mean, a list as its means' sum.
    if isinstance(value, Tensor):
        return value.mean()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
        return sum(v.mean() for v in value)
    raise TypeError(f"losses[{name!r}]: expected a tensor or a list of tensors, got {type(value).__name__}")


class ALWAHook(Hook):
    """Adaptive loss weighting (ALWA) of one classification / regression pair of losses.

    At ``before_train`` the hook wraps the model's ``parse_losses`` (mmengine's
    ``BaseModel`` method that turns the loss dict into the loss to back-propagate): before
    parsing, ``losses[cls_key]`` and ``losses[reg_key]`` (each reduced as parse_losses would:
    a tensor's mean, a list's sum of means) are replaced by ``λcls·cls`` and ``λreg·reg``, and
    ``losses[log_key]`` = λcls after this iteration's update is added for the logs (its name
    has no "loss", so parse_losses does not add it to the total). ``after_train`` unwraps.

    Args:
        cls_key, reg_key: the loss dict's entries; mmdet's one-stage heads use ``loss_cls`` /
            ``loss_bbox``; the RPN of two-stage detectors ``loss_rpn_cls`` / ``loss_rpn_bbox``
            (where the paper applies ALWA).
        log_key: the name λcls is logged under (must not contain "loss").
        alwa_options: :class:`alwa_ext.ALWA`'s arguments (mode, interval, cls_weight,
            reg_weight, update, sync), its defaults where left out.

    ALWA's state is saved into every checkpoint and restored when the runner resumes (not
    when it only loads weights with ``load_from``). Every ``parse_losses`` call during training
    is an ALWA iteration (mmdet's validation predicts and does not call it).
    """

    priority = "NORMAL"

    def __init__(
        self,
        cls_key: str = "loss_cls",
        reg_key: str = "loss_bbox",
        log_key: str = "alwa_lambda_cls",
        **alwa_options,
    ) -> None:
        for name, key in (("cls_key", cls_key), ("reg_key", reg_key), ("log_key", log_key)):
            if not isinstance(key, str) or not key:
                raise ValueError(f"{name}: expected a non-empty string, got {key!r}")
        if cls_key == reg_key:
            raise ValueError(f"reg_key: must differ from cls_key, both are {cls_key!r}")
        if "loss" in log_key:
            raise ValueError(f"log_key: must not contain 'loss' (parse_losses would add it to the loss), got {log_key!r}")
        self.cls_key, self.reg_key, self.log_key = cls_key, reg_key, log_key
        # Made here, not in before_train: mmengine loads a resumed checkpoint before then.
        self.alwa = ALWA(**alwa_options)
        self._wrapped = None  # (model, wrapper) while training

    @property
    def checkpoint_name(self) -> str:
        return f"{self.cls_key}/{self.reg_key}"

    # -------------------------------------------------------------------- weighting

    def weight_losses(self, losses: Dict[str, object]) -> Dict[str, object]:
        """The loss dict with the pair weighted by ALWA (records the iteration); a new dict."""
        missing = [key for key in (self.cls_key, self.reg_key) if key not in losses]
        if missing:
            raise KeyError(
                f"ALWAHook: the model's losses have no {missing} (they have {list(losses)}); set cls_key / reg_key"
            )
        loss_cls = _reduce_like_parse_losses(self.cls_key, losses[self.cls_key])
        loss_reg = _reduce_like_parse_losses(self.reg_key, losses[self.reg_key])
        weighted_cls, weighted_reg = self.alwa(loss_cls, loss_reg)
        weighted = dict(losses)
        weighted[self.cls_key] = weighted_cls
        weighted[self.reg_key] = weighted_reg
        weighted[self.log_key] = self.alwa.weights[0].detach().to(weighted_cls.dtype)
        return weighted

    @staticmethod
    def _unwrapped(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner) -> None:
        self.after_train(runner)  # a run that raised never unwrapped: weight once, not twice
        model = self._unwrapped(runner)
        parse_losses = model.parse_losses  # the bound method, or an earlier hook's wrapper

        def weighted_parse_losses(losses):
            return parse_losses(self.weight_losses(losses))

        model.parse_losses = weighted_parse_losses
        self._wrapped = (model, weighted_parse_losses)

    def after_train(self, runner) -> None:
        if self._wrapped is None:
            return
        model, wrapper = self._wrapped
        if vars(model).get("parse_losses") is wrapper:
            del model.parse_losses
        self._wrapped = None

    # -------------------------------------------------------------------- checkpoints

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        entry = {"state": self.alwa.state_dict()}
        checkpoint.setdefault(CHECKPOINT_KEY, {})[self.checkpoint_name] = entry

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        entry = checkpoint.get(CHECKPOINT_KEY, {}).get(self.checkpoint_name)
        # mmengine's own EMAHook restores its state only when resuming (runner._resume); a
        # runner without the flag is taken to be resuming.
        if entry is None or not getattr(runner, "_resume", True):
            return
        # ALWA refuses a state saved with another mode, interval or update.
        self.alwa.load_state_dict(entry["state"])


# --------------------------------------------------------------------------- registration


def _register(registry: Registry, name: str, module: type, force: bool) -> None:
    if registry.module_dict.get(name) is module:
        return  # registering twice (an import and a call) is a no-op
    registry.register_module(name=name, module=module, force=force)


def register(models: Optional[Registry] = None, hooks: Optional[Registry] = None, *, force: bool = False) -> Dict[str, List[str]]:
    """Registers the ``Alwa*`` loss modules and ``ALWAHook``; returns the names per registry.

    With no registry given, registers into mmdet's ``mmdet.registry.MODELS`` and ``HOOKS``
    (ImportError if mmdet is not importable). With one or both given (mmengine
    ``Registry`` objects, e.g. ``mmengine.registry.MODELS`` / ``HOOKS`` or a project's own),
    registers into those only. A name already bound to another class raises mmengine's
    KeyError unless ``force``.
    """
    if models is None and hooks is None:
        try:
            from mmdet.registry import HOOKS as mmdet_hooks
            from mmdet.registry import MODELS as mmdet_models
        except ImportError as error:
            raise ImportError(
                f"register(): mmdet is not importable ({error}); pass the mmengine registries to fill, "
                "e.g. register(models=mmengine.registry.MODELS, hooks=mmengine.registry.HOOKS)"
            ) from error
        models, hooks = mmdet_models, mmdet_hooks
    for name, registry in (("models", models), ("hooks", hooks)):
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(f"{name}: expected an mmengine Registry, got {type(registry).__name__}")
    registered: Dict[str, List[str]] = {"models": [], "hooks": []}
    if models is not None:
        for name, module in LOSS_MODULES.items():
            _register(models, name, module, force)
            registered["models"].append(name)
    if hooks is not None:
        _register(hooks, HOOK_NAME, ALWAHook, force)
        registered["hooks"].append(HOOK_NAME)
    return registered


def _register_with_mmdet_if_present() -> None:
    # What `custom_imports` relies on. mmdet absent: nothing to do (mmengine-only users call
    # register() with their registries); mmdet present but failing to import: say so.
    if "mmdet" in sys.modules:
        if sys.modules["mmdet"] is None:  # an import blocked on purpose: absent
            return
    elif importlib.util.find_spec("mmdet") is None:
        return
    try:
        register()
    except ImportError as error:
        warnings.warn(f"alwa_ext.integrations.mmdet: not registered with mmdet ({error})", stacklevel=2)


_register_with_mmdet_if_present()

__all__ = ["register", "ALWAHook", "LOSS_MODULES", "HOOK_NAME", "CHECKPOINT_KEY"]
