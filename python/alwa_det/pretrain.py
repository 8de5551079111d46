"""Pretraining a backbone on a task that is not the detector's, as ImageNet is not VOC.

The paper's detectors start from an ImageNet-pretrained ResNet-50; none can be downloaded here,
so this makes the condition: the detector's backbone is first trained to classify which of six
*other* shapes (:data:`alwa_det.data.PRETRAIN_CLASSES`: pentagons, stars, rings, ...) an image
holds (multi-label, binary cross-entropy on the globally pooled C5 features), on synthetic images
drawn from a generator stream of their own. ``backbone.pt`` is then what ``alwa-train train
--backbone-weights`` starts a detector's backbone from, its FPN and heads fresh.

A pretraining run is a run folder like a detector's (log.csv, checkpoints/last.pt, metrics.json,
the same lock and atomic writes), resumable from its checkpoint with ``--resume``.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import ClassVar, Dict, FrozenSet, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from .backbone import BACKBONE_FILE_FORMAT, SmallResNet, backbone_architecture, save_backbone
from .checkpoint import checkpoint_payload, restore_parts, resumable_checkpoint, training_folder
from .config import RunConfig, SGDSchedule, lr_steps_for
from .data import PRETRAIN_CLASSES, SyntheticShapes, TrainBatchSampler, collate
from .detector_base import PIXEL_MEAN, PIXEL_STD
from .errors import TrainingDiverged
from .loop import Batches, StopRequest, lr_factor  # the detector's schedule: warm-up, then tenfold drops
from .run_folder import (BACKBONE_WEIGHTS, CHECKPOINT_DIR, CONFIG_FILE, LOCK_FILE, LOG_FILE, METRICS_FILE, RunFolder,
                         RunFolderError, read_json, save_atomically, write_json_atomically)
from .run_log import RunLog

# The pretraining images' generator streams: apart from every detection stream (train: seed,
# eval: seed + 7_919_000), so no pretraining picture is one the detector is trained or scored on.
TRAIN_STREAM, EVAL_STREAM = 104_729_000, 104_729_500


@dataclass
class PretrainConfig(RunConfig, SGDSchedule):
    KIND: ClassVar[str] = "pretrain"
    # Anything else would make another backbone.
    RESUME_CHANGEABLE: ClassVar[FrozenSet[str]] = frozenset({
        "iterations", "lr_steps", "out", "threads", "log_interval", "checkpoint_interval"})
    RESUMABLE_CHANGES: ClassVar[str] = "its length and lr drops, threads and logging"

    out: str = "runs/pretrain"
    width: int = 16  # the small backbone's, as in alwa_det.config.TrainConfig
    blocks: Tuple[int, ...] = (1, 1, 1, 1)
    image_size: int = 128
    train_images: int = 8000
    eval_images: int = 400
    iterations: int = 15000  # ~8 minutes on two CPU cores; the loss still falls at 3000
    batch_size: int = 16
    lr: float = 0.02
    lr_steps: Tuple[int, ...] = (11250, 13500)
    seed: int = 0
    threads: int = 1
    log_interval: int = 20
    checkpoint_interval: int = 250

    def validated(self) -> "PretrainConfig":
        config = self
        for name in ("width", "image_size", "train_images", "eval_images", "iterations", "batch_size", "log_interval",
                     "checkpoint_interval"):
            if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(config, name)!r}")
        if config.image_size < 32:
            raise ValueError(f"image_size: expected at least 32, got {config.image_size}")
        if len(config.blocks) != 4 or any(b < 1 for b in config.blocks):
            raise ValueError(f"blocks: expected four positive block counts, got {config.blocks!r}")
        config.check_schedule()
        if not 0 <= config.seed < 2**32:
            raise ValueError(f"seed: expected a non-negative integer below 2**32, got {config.seed!r}")
        if not isinstance(config.out, str) or not config.out.strip():
            raise ValueError(f"out: expected a run folder, got {config.out!r}")
        return config


def make_pretrain_config(explicit: Dict[str, object]) -> PretrainConfig:
    """Defaults, then ``explicit``; a length without ``lr_steps`` keeps the drops at 75% and 90%."""
    values = dict(explicit)
    if "iterations" in values and "lr_steps" not in values:
        values["lr_steps"] = lr_steps_for(int(values["iterations"]))
    return PretrainConfig.from_dict(values)


class ShapeClassifier(nn.Module):
    """The detector's backbone, its C5 features pooled, and one logit per pretraining class."""

    def __init__(self, config: PretrainConfig):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = SmallResNet(config.width, config.blocks)
        self.classifier = nn.Linear(self.backbone.out_channels[-1], len(PRETRAIN_CLASSES))

    def forward(self, images: Tensor) -> Tensor:
        # The detector's normalisation (alwa_det.detector_base), so the features transfer as they are.
        x = (images.float() / 255.0 - self.pixel_mean) / self.pixel_std
        return self.classifier(self.backbone(x)[-1].mean(dim=(2, 3)))


def presence(labels: Tensor, valid: Tensor) -> Tensor:
    """(B, classes) float: 1 where the image holds an object of that class."""
    hot = F.one_hot(labels.clamp(min=0), len(PRETRAIN_CLASSES)) * valid[..., None]
    return hot.amax(dim=1).float()


def datasets(config: PretrainConfig) -> Tuple[SyntheticShapes, SyntheticShapes]:
    offset = config.seed * 1_000
    return (SyntheticShapes(config.train_images, config.image_size, TRAIN_STREAM + offset, class_names=PRETRAIN_CLASSES),
            SyntheticShapes(config.eval_images, config.image_size, EVAL_STREAM + offset, class_names=PRETRAIN_CLASSES))


@torch.no_grad()
def accuracy(model: ShapeClassifier, dataset: SyntheticShapes, batch_size: int = 50) -> Dict[str, float]:
    """Per-label accuracy and the share of images whose every label is right (logit > 0 = present)."""
    model.eval()
    right_labels, right_images = 0.0, 0.0
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        correct = (model(batch.images) > 0).float() == presence(batch.gt_labels, batch.gt_valid)
        right_labels += float(correct.float().mean(dim=1).sum())
        right_images += float(correct.all(dim=1).float().sum())
    model.train()
    return {"label_accuracy": right_labels / len(dataset), "image_accuracy": right_images / len(dataset)}


LOG_COLUMNS = ("iteration", "logged_iterations", "loss", "lr", "seconds")


def pretrain(config: PretrainConfig, resume: Optional[str] = None, overwrite: bool = False,
             show_progress: bool = True) -> Dict[str, object]:
    """Train the shape classifier, write ``backbone.pt`` and metrics.json; returns the metrics.

    A fresh run needs an empty ``config.out`` (or ``overwrite``); ``resume`` names a pretraining
    folder whose run continues there (only ``iterations``, its lr drops, ``threads`` and logging may
    change), from the batch after its checkpoint, as if it had never stopped.
    """
    folder = training_folder(config.out, resume, overwrite)
    checkpoint = resumable_checkpoint(folder, config) if resume else None
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    train_set, eval_set = datasets(config)
    model = ShapeClassifier(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(config, it))
    sampler = TrainBatchSampler(len(train_set), config.batch_size, config.seed)
    start, seconds_before = 0, 0.0
    folder.claim(fresh=checkpoint is None, overwrite=overwrite)
    try:
        if checkpoint is not None:
            restore_parts(checkpoint, {"model": model, "optimizer": optimizer, "scheduler": scheduler})
            torch.set_rng_state(checkpoint["rng"])
            start, seconds_before = int(checkpoint["iteration"]), float(checkpoint["train_seconds"])
        write_json_atomically(config.to_dict(), folder.file(CONFIG_FILE))
        log = (RunLog.resumed(folder.file(LOG_FILE), LOG_COLUMNS, start) if start
               else RunLog.fresh(folder.file(LOG_FILE), LOG_COLUMNS))
        seconds = _train_from(config, folder, model, optimizer, scheduler, sampler, train_set, log, start, seconds_before,
                              show_progress)
        trained_on = {"task": "multi-label shape classification", "classes": list(PRETRAIN_CLASSES),
                      "iterations": config.iterations, "images": config.train_images, "seed": config.seed,
                      "streams": [TRAIN_STREAM + config.seed * 1_000, EVAL_STREAM + config.seed * 1_000]}
        architecture = backbone_architecture("small", config.width, config.blocks)
        save_backbone(folder.file(BACKBONE_WEIGHTS), model.backbone, architecture, trained_on)
        with open(folder.file(BACKBONE_WEIGHTS), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        metrics = {"iterations": config.iterations, "train_seconds": round(seconds, 2), **accuracy(model, eval_set),
                   "backbone": BACKBONE_WEIGHTS, "backbone_sha256": digest, "format": BACKBONE_FILE_FORMAT,
                   "config": config.to_dict()}
        write_json_atomically(metrics, folder.file(METRICS_FILE))  # last: the run is finished
        return metrics
    finally:
        folder.release()


def _train_from(config, folder, model, optimizer, scheduler, sampler, train_set, log, start, seconds_before,
                show_progress) -> float:
    session_start = time.perf_counter()
    seconds = lambda: seconds_before + time.perf_counter() - session_start  # noqa: E731
    batches = Batches(train_set, sampler, torch.device("cpu"))
    window_sum, window_count, last_checkpoint = torch.zeros(()), 0, start or None
    model.train()
    # Ctrl-C stops the loop before its next step (alwa_det.loop.StopRequest), so a checkpoint is whole.
    with StopRequest(active=True) as stop, \
            tqdm(total=config.iterations, initial=start, desc="pretrain", dynamic_ncols=True, file=sys.stderr,
                 disable=not show_progress) as progress:
        for iteration in range(start, config.iterations):
            stop.check(iteration, last_checkpoint, folder, command="pretrain", what="pretraining interrupted")
            batch = batches.get(iteration)
            loss = F.binary_cross_entropy_with_logits(model(batch.images), presence(batch.gt_labels, batch.gt_valid))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            window_sum, window_count = window_sum + loss.detach(), window_count + 1
            done = iteration + 1
            if done % config.log_interval == 0 or done == config.iterations:
                mean = float(window_sum) / window_count
                if not math.isfinite(mean):
                    raise TrainingDiverged(f"pretraining diverged: the loss became non-finite before iteration {done}; "
                                           "lower --lr")
                log.append({"iteration": done, "logged_iterations": window_count, "loss": mean,
                            "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds(), 3)})
                progress.set_postfix(loss=f"{mean:.3f}")
                progress.update(window_count)
                window_sum, window_count = torch.zeros(()), 0
            if done % config.checkpoint_interval == 0 or done == config.iterations:
                parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
                save_atomically({"kind": config.KIND, **checkpoint_payload(config, done, seconds(), parts),
                                 "rng": torch.get_rng_state()}, folder.checkpoint)
                last_checkpoint = done
    return seconds()


def pretrained_backbone(config: PretrainConfig, show_progress: bool = False) -> str:
    """The path of ``config``'s backbone.pt: reused when its folder holds that finished pretraining,
    continued from the folder's checkpoint when it holds that pretraining unfinished, trained when the
    folder is empty; a folder holding another pretraining is an error (nothing is overwritten)."""
    folder = RunFolder(config.out)
    metrics_path = folder.file(METRICS_FILE)
    if os.path.isfile(metrics_path) and os.path.isfile(folder.file(BACKBONE_WEIGHTS)):
        metrics = read_json(metrics_path)
        if config.is_saved_as(metrics.get("config")):
            return folder.file(BACKBONE_WEIGHTS)
        raise RunFolderError(f"{folder.path} holds another pretraining (its metrics.json's config differs); "
                             "choose another folder")
    if os.path.isfile(folder.checkpoint):
        pretrain(config, resume=folder.path, show_progress=show_progress)
        return folder.file(BACKBONE_WEIGHTS)
    # A pretraining killed before its first checkpoint leaves its config and log, nothing to continue:
    # those are started again; any other file means the folder is not this pretraining's.
    left = set(os.listdir(folder.path)) - {LOCK_FILE, CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE} if os.path.isdir(folder.path) else set()
    if left:
        raise RunFolderError(f"{folder.path} holds files of another run ({', '.join(sorted(left))}); choose another folder")
    pretrain(config, overwrite=os.path.isdir(folder.path), show_progress=show_progress)
    return folder.file(BACKBONE_WEIGHTS)
