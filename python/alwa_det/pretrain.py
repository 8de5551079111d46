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

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import BACKBONE_FILE_FORMAT, SmallResNet, backbone_architecture, save_backbone
from .data import PRETRAIN_CLASSES, SyntheticShapes, TrainBatchSampler, collate
from .detector_base import PIXEL_MEAN, PIXEL_STD
from .errors import TrainingDiverged, TrainingInterrupted
from .run_folder import (BACKBONE_WEIGHTS, CONFIG_FILE, LOG_FILE, METRICS_FILE, RunFolder, RunFolderError, read_json,
                         run_folder_of, same_folder, save_atomically, write_json_atomically)
from .run_log import RunLog
from .train import StopRequest, lr_factor  # the detector's schedule: warm-up, then tenfold drops

# The pretraining images' generator streams: apart from every detection stream (train: seed,
# eval: seed + 7_919_000), so no pretraining picture is one the detector is trained or scored on.
TRAIN_STREAM, EVAL_STREAM = 104_729_000, 104_729_500


@dataclass
class PretrainConfig:
    out: str = "runs/pretrain"
    width: int = 16  # the small backbone's, as in alwa_det.config.TrainConfig
    blocks: Tuple[int, ...] = (1, 1, 1, 1)
    image_size: int = 128
    train_images: int = 8000
    eval_images: int = 400
    iterations: int = 15000  # ~8 minutes on two CPU cores; the loss still falls at 3000
    batch_size: int = 16
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    warmup_ratio: float = 0.001
    lr_steps: Tuple[int, ...] = (11250, 13500)
    seed: int = 0
    threads: int = 1
    log_interval: int = 20
    checkpoint_interval: int = 250

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, object]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown pretraining option(s): {', '.join(unknown)}")
        values = {k: tuple(v) if k in ("blocks", "lr_steps") else v for k, v in values.items()}
        config = cls(**values)
        for name in ("width", "image_size", "train_images", "eval_images", "iterations", "batch_size", "log_interval",
                     "checkpoint_interval"):
            if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(config, name)!r}")
        if config.image_size < 32:
            raise ValueError(f"image_size: expected at least 32, got {config.image_size}")
        if len(config.blocks) != 4 or any(b < 1 for b in config.blocks):
            raise ValueError(f"blocks: expected four positive block counts, got {config.blocks!r}")
        if not config.lr > 0:
            raise ValueError(f"lr: expected a positive number, got {config.lr!r}")
        if list(config.lr_steps) != sorted(config.lr_steps) or any(s < 1 for s in config.lr_steps):
            raise ValueError(f"lr_steps: expected increasing positive iterations, got {config.lr_steps!r}")
        if not 0 <= config.seed < 2**32:
            raise ValueError(f"seed: expected a non-negative integer below 2**32, got {config.seed!r}")
        if not isinstance(config.out, str) or not config.out.strip():
            raise ValueError(f"out: expected a run folder, got {config.out!r}")
        return config


def make_pretrain_config(explicit: Dict[str, object]) -> PretrainConfig:
    """Defaults, then ``explicit``; a length without ``lr_steps`` keeps the drops at 75% and 90%."""
    values = dict(explicit)
    if "iterations" in values and "lr_steps" not in values:
        values["lr_steps"] = (max(1, int(values["iterations"] * 0.75)), max(1, int(values["iterations"] * 0.9)))
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
    if resume and overwrite:
        raise RunFolderError("give resume or overwrite, not both")
    folder = RunFolder(run_folder_of(resume) if resume else config.out)
    if resume and not same_folder(folder.path, config.out):
        raise RunFolderError(f"resume: the run in {folder.path} continues there, but out is {config.out!r}")
    checkpoint = _resumable(folder, config) if resume else None
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
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
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


# What a resumed pretraining may change; anything else would make another backbone.
RESUME_CHANGEABLE = frozenset({"iterations", "lr_steps", "out", "threads", "log_interval", "checkpoint_interval"})


def _resumable(folder: RunFolder, config: PretrainConfig) -> Dict[str, object]:
    checkpoint = load_pretrain_checkpoint(folder.checkpoint)
    saved = checkpoint["config"]
    conflicts = sorted(k for k, v in config.to_dict().items() if k not in RESUME_CHANGEABLE
                       and _plain(saved.get(k)) != _plain(v))
    if conflicts:
        raise RunFolderError(f"{folder.checkpoint}: the pretraining's config differs in {', '.join(conflicts)}")
    if int(checkpoint["iteration"]) > config.iterations:
        raise RunFolderError(f"iterations: {config.iterations} is below the {checkpoint['iteration']} iterations "
                             f"{folder.checkpoint} has trained")
    return checkpoint


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def load_pretrain_checkpoint(path: str) -> Dict[str, object]:
    if not os.path.isfile(path):
        raise RunFolderError(f"{path}: no checkpoint to resume from")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise RunFolderError(f"checkpoint {path} cannot be read ({type(error).__name__})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "pretrain":
        raise RunFolderError(f"checkpoint {path} is not a pretraining checkpoint")
    return checkpoint


def _train_from(config, folder, model, optimizer, scheduler, sampler, train_set, log, start, seconds_before,
                show_progress) -> float:
    from tqdm import tqdm

    per_epoch = len(sampler)
    session_start = time.perf_counter()
    seconds = lambda: seconds_before + time.perf_counter() - session_start  # noqa: E731
    iterator, window_sum, window_count, last_checkpoint = None, torch.zeros(()), 0, start or None
    model.train()
    # Ctrl-C stops the loop before its next step (alwa_det.train.StopRequest), so a checkpoint is whole.
    with StopRequest(active=True) as stop, \
            tqdm(total=config.iterations, initial=start, desc="pretrain", dynamic_ncols=True, file=sys.stderr,
                 disable=not show_progress) as progress:
        for iteration in range(start, config.iterations):
            if stop.requested:
                kept = (f"its last checkpoint is iteration {last_checkpoint} (alwa-train pretrain --resume {folder.path} "
                        "continues from there)" if last_checkpoint else "it has no checkpoint yet")
                raise TrainingInterrupted(f"pretraining interrupted after iteration {iteration}; {kept}")
            epoch, in_epoch = divmod(iteration, per_epoch)
            if iterator is None or in_epoch == 0:
                sampler.set_position(epoch, in_epoch)
                iterator = iter(torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate))
            batch = next(iterator)
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
                save_atomically({"kind": "pretrain", "config": config.to_dict(), "iteration": done,
                                 "train_seconds": seconds(), "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
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
        if _plain_dict(metrics.get("config")) == _plain_dict(config.to_dict()):
            return folder.file(BACKBONE_WEIGHTS)
        raise RunFolderError(f"{folder.path} holds another pretraining (its metrics.json's config differs); "
                             "choose another folder")
    if os.path.isfile(folder.checkpoint):
        pretrain(config, resume=folder.path, show_progress=show_progress)
        return folder.file(BACKBONE_WEIGHTS)
    # A pretraining killed before its first checkpoint leaves its config and log, nothing to continue:
    # those are started again; any other file means the folder is not this pretraining's.
    left = set(os.listdir(folder.path)) - {".lock", "checkpoints", CONFIG_FILE, LOG_FILE} if os.path.isdir(folder.path) else set()
    if left:
        raise RunFolderError(f"{folder.path} holds files of another run ({', '.join(sorted(left))}); choose another folder")
    pretrain(config, overwrite=os.path.isdir(folder.path), show_progress=show_progress)
    return folder.file(BACKBONE_WEIGHTS)


def _plain_dict(values):
    return {k: _plain(v) for k, v in values.items()} if isinstance(values, dict) else values
