"""Checkpoints, and the checks a resumed run passes.

A checkpoint (a run folder's checkpoints/last.pt) holds what a run needs to go on exactly where it
stopped: its config, the iteration it reached, its training seconds, the state dicts of its
learning parts (model, optimiser, schedule; a detector's also its AMP scaler and loss weighting)
and the RNG state. A detector's holds every rank's RNG state and log window, so a resumed
multi-process run logs and trains as an uninterrupted one; a pretraining's (``alwa-train
pretrain``) says ``"kind": "pretrain"``, a detector's has no kind.

A run resumes in the folder of its checkpoint, from a checkpoint of its own kind, with the same
config but for the fields of its config class's ``RESUME_CHANGEABLE``, and never to fewer
iterations than the checkpoint has trained.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import numpy as np
import torch
import torch.distributed as dist

from .config import RunConfig, TrainConfig
from .distributed import on_main
from .run_folder import (CHECKPOINT_DIR, CONFIG_FILE, FINAL_WEIGHTS, LAST_CHECKPOINT, RunFolder, RunFolderError, describe,
                         read_json, run_folder_of, same_folder, save_atomically)
from .run_log import LogWindow


@dataclass
class LoopState:
    """Where the training loop stands; a checkpoint saves it beside the learning state."""

    iteration: int = 0
    window: LogWindow = field(default_factory=LogWindow)
    seconds: float = 0.0  # training time of the sessions before this one, up to the checkpoint


# --------------------------------------------------------------------------- saving and loading


def rng_state() -> Dict[str, object]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, object]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(config: RunConfig, iteration: int, seconds: float, parts: Dict[str, object],
                       **extra: object) -> Dict[str, object]:
    """A checkpoint's content: the config, the iteration reached, the training seconds, the state
    dict of each of the learning ``parts`` (by name), then ``extra``."""
    return {"config": config.to_dict(), "iteration": iteration, "train_seconds": seconds,
            **{name: part.state_dict() for name, part in parts.items()}, **extra}


def restore_parts(checkpoint: Dict[str, object], parts: Dict[str, object]) -> None:
    """Load each of the learning ``parts`` from its state dict in ``checkpoint``."""
    for name, part in parts.items():
        part.load_state_dict(checkpoint[name])


def load_checkpoint(path: str, kind: str = TrainConfig.KIND) -> Dict[str, object]:
    """A checkpoint file of ``kind`` (a config class's KIND), or a run folder's checkpoints/last.pt;
    a missing, damaged or other file is an error naming it."""
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_DIR, LAST_CHECKPOINT)
    if not os.path.isfile(path):
        raise RunFolderError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise RunFolderError(f"checkpoint {path} cannot be read ({type(error).__name__}: {describe(error)})") from error
    if not isinstance(checkpoint, dict) or not {"config", "model", "iteration"} <= set(checkpoint) or \
            checkpoint.get("kind", TrainConfig.KIND) != kind:
        raise RunFolderError(f"checkpoint {path} is not an alwa_det {kind} checkpoint")
    return checkpoint


def load_weights(path: str) -> Tuple[TrainConfig, Dict[str, torch.Tensor]]:
    """The config and model weights of a run folder, a checkpoint file, or a model_final.pt beside
    its config.json."""
    if os.path.isfile(path) and os.path.basename(path) == FINAL_WEIGHTS:
        config_path = os.path.join(os.path.dirname(path), CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise ValueError(f"{path}: no config.json beside it to rebuild the model")
        config = TrainConfig.from_dict(read_json(config_path))
        try:
            return config, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file
            raise RunFolderError(f"{path} cannot be read ({type(error).__name__}: {describe(error)})") from error
    checkpoint = load_checkpoint(path)
    return TrainConfig.from_dict(checkpoint["config"]), checkpoint["model"]


def _learning_parts(training) -> Dict[str, object]:
    return {"model": training.model, "optimizer": training.optimizer, "scheduler": training.scheduler,
            "scaler": training.scaler, "weighting": training.weighting}


def save_checkpoint(training, state: LoopState, folder: RunFolder) -> None:
    """The checkpoint of a detector's ``training`` (an :class:`alwa_det.loop.Training`) at ``state``.
    Every rank's RNG state and log window are gathered so a resumed multi-process run continues
    exactly too."""
    process = training.process
    per_rank = [(rng_state(), state.window.state_dict())]
    if process.distributed:
        gathered = [None] * process.world_size
        dist.all_gather_object(gathered, per_rank[0])
        per_rank = gathered

    def write() -> None:
        payload = checkpoint_payload(training.config, state.iteration, state.seconds, _learning_parts(training),
                                     backbone_weights_sha256=training.backbone_weights_sha256,
                                     rng=[rng for rng, _ in per_rank], log_window=[window for _, window in per_rank])
        save_atomically(payload, folder.checkpoint)

    on_main(process, write)  # a failed write (a full disk) stops every rank, not only the main one


def restore(training, checkpoint: Dict[str, object]) -> LoopState:
    """Load a detector checkpoint's learning state into ``training``, with this rank's RNG state and
    log window; returns where the loop stands."""
    restore_parts(checkpoint, _learning_parts(training))
    training.backbone_weights_sha256 = checkpoint.get("backbone_weights_sha256")
    rank = training.process.rank
    set_rng_state(checkpoint["rng"][min(rank, len(checkpoint["rng"]) - 1)])
    window = LogWindow()
    if "log_window" in checkpoint:
        window.load_state_dict(checkpoint["log_window"][min(rank, len(checkpoint["log_window"]) - 1)], training.device)
    return LoopState(int(checkpoint["iteration"]), window, float(checkpoint.get("train_seconds", 0.0)))


# --------------------------------------------------------------------------- resuming


def resume_conflicts(saved: Dict[str, object], values: Dict[str, object],
                     config_class: Type[RunConfig] = TrainConfig) -> List[str]:
    """The keys of ``values`` that a run resumed from a checkpoint of config ``saved`` may not change
    (a key ``saved`` lacks counts at its default: what that run did)."""
    as_saved = lambda value: list(value) if isinstance(value, (tuple, list)) else value  # noqa: E731
    saved = config_class.with_defaults(saved)
    return sorted(k for k, v in values.items()
                  if k not in config_class.RESUME_CHANGEABLE and as_saved(saved.get(k)) != as_saved(v))


def shortened(checkpoint: Dict[str, object], config: RunConfig) -> bool:
    """Whether ``config`` has fewer iterations than ``checkpoint`` has trained: a run cannot be shortened."""
    return config.iterations < int(checkpoint["iteration"])


def training_folder(out: str, resume: Optional[str], overwrite: bool) -> RunFolder:
    """The folder a run trains in: ``out`` for a fresh run; for a resumed one the run folder that
    ``resume`` names (the folder or its checkpoints/last.pt), which must be ``out``."""
    if resume and overwrite:
        raise RunFolderError("give resume or overwrite, not both")
    folder = RunFolder(run_folder_of(resume) if resume else out)
    if resume and not same_folder(folder.path, out):
        raise RunFolderError(f"resume: the run in {folder.path} continues there, but out is {out!r}")
    return folder


def resumable_checkpoint(folder: RunFolder, config: RunConfig) -> Dict[str, object]:
    """The folder's checkpoint, if ``config`` may continue it: the same run, not shortened."""
    checkpoint = load_checkpoint(folder.checkpoint, config.KIND)
    conflicts = resume_conflicts(checkpoint["config"], config.to_dict(), type(config))
    if conflicts:
        raise RunFolderError(f"{folder.checkpoint}: the run's config differs in {', '.join(conflicts)}; a resumed run "
                             f"can change only {config.RESUMABLE_CHANGES}")
    if shortened(checkpoint, config):
        iteration = int(checkpoint["iteration"])
        raise RunFolderError(f"iterations: {config.iterations} is below the {iteration} iterations the checkpoint "
                             f"{folder.checkpoint} has trained; a run cannot be shortened (give --iterations {iteration} "
                             "or more)")
    return checkpoint


def resumed_values(resume: str, explicit: Dict[str, object], config_class: Type[RunConfig],
                   overwrite: bool = False) -> Dict[str, object]:
    """The config values of a ``--resume`` of the run folder ``resume``: the checkpoint's, with the
    options the user gave (``explicit``), which may change only what ``config_class`` allows; a
    ``--resume`` with ``--overwrite``, or with an ``--out`` naming another folder, is an error."""
    if overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    folder = run_folder_of(resume)
    if "out" in explicit and not same_folder(explicit["out"], folder):
        raise ValueError(f"--resume continues the run in {folder}; --out {explicit['out']} names another folder "
                         "(copy the run folder to branch a run)")
    saved = load_checkpoint(RunFolder(folder).checkpoint, config_class.KIND)["config"]
    conflicts = resume_conflicts(saved, explicit, config_class)
    if conflicts:
        raise ValueError(f"--resume continues the saved run; these options differ from its config: {', '.join(conflicts)}")
    return {**saved, **explicit, "out": folder}
