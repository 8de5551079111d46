"""The training loop: data, optimiser and schedule, loss weighting, the step, and the loop that
logs, checks and checkpoints the run as it trains (:func:`run_iterations`).

The step itself never waits for the device: losses are accumulated on the device and read
(one sync) only every ``log_interval`` iterations.
"""
from __future__ import annotations

import itertools
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .backbone import backbone_architecture, load_backbone_weights
from .checkpoint import LoopState, save_checkpoint
from .config import TrainConfig
from .data import Batch, TrainBatchSampler, build_dataset, collate
from .distributed import Process, on_main
from .errors import TrainingDiverged, TrainingInterrupted
from .models import build_detector
from .run_folder import RunFolder
from .run_log import LogWindow, RunLog
from .weighting import make_weighting

# The training progress bar; off in the worker processes of a command that shows the progress of
# several runs itself (alwa-train demo).
SHOW_PROGRESS = True


def lr_factor(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up from ``warmup_ratio``, then a tenfold drop at each of ``lr_steps``."""
    factor = 0.1 ** sum(iteration >= step for step in config.lr_steps)
    if iteration < config.warmup_iterations:
        progress = iteration / config.warmup_iterations
        factor *= config.warmup_ratio + (1 - config.warmup_ratio) * progress
    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Training:
    """What the training step and a checkpoint need: the process, the data and the learning state."""

    config: TrainConfig
    process: Process
    device: torch.device
    train_set: torch.utils.data.Dataset
    sampler: TrainBatchSampler
    model: torch.nn.Module
    trained: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    weighting: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    backbone_weights_sha256: Optional[str] = None  # of the file the backbone started from


def build_training(config: TrainConfig, process: Process, device: torch.device, fresh: bool = True) -> Training:
    """Data, model, loss weighting, optimiser, schedule and AMP scaler, seeded from the config; a
    ``fresh`` run's backbone starts from ``config.backbone_weights`` (a resumed one from its checkpoint)."""
    seed_everything(config.seed)
    train_set = build_dataset(config.dataset, config.train_split, config.image_size, config.data_root, config.seed,
                              config.synthetic_train_images)
    model = build_detector(config, len(train_set.class_names))
    digest = None
    if fresh and config.backbone_weights:
        digest = load_backbone_weights(model.backbone, config.backbone_weights,
                                       backbone_architecture(config.backbone, config.width, config.blocks))
    model = model.to(device)
    weighting = make_weighting(config.weighting, config.cls_weight, config.reg_weight, config.interval,
                               config.alwa_update, config.alwa_statistic).to(device)
    # On CUDA the fused SGD takes the AMP scaler's inf check on the device; the unfused step would
    # read it on the host every iteration.
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                fused=True if device.type == "cuda" else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(config, it))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp)
    trained = model
    if process.distributed:
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = TrainBatchSampler(len(train_set), config.batch_size, config.seed, process.rank, process.world_size)
    return Training(config, process, device, train_set, sampler, model, trained, weighting, optimizer, scheduler, scaler,
                    digest)


def _ignore_interrupts(worker_id: int) -> None:
    """A loader worker leaves Ctrl-C to the main process, which stops between steps and shuts it down
    (a worker dying of it mid-batch would make the main process fail on a lost worker instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Batches:
    """The training batches from any iteration on, on ``device``: the sampler is placed at (epoch,
    batch) of the iteration, so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, dataset: torch.utils.data.Dataset, sampler: TrainBatchSampler, device: torch.device,
                 workers: int = 0):
        self.dataset, self.sampler, self.device = dataset, sampler, device
        self.per_epoch = len(sampler)
        self.loader_kwargs = dict(batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                  worker_init_fn=_ignore_interrupts if workers else None)
        self.iterator = None

    def get(self, iteration: int) -> Batch:
        epoch, batch_in_epoch = divmod(iteration, self.per_epoch)
        if self.iterator is None or batch_in_epoch == 0:
            self.iterator = None  # the finished epoch's workers shut down before the next epoch's start
            self.sampler.set_position(epoch, batch_in_epoch)
            self.iterator = iter(torch.utils.data.DataLoader(self.dataset, **self.loader_kwargs))
        return next(self.iterator).to(self.device)


class StopRequest:
    """While active, Ctrl-C (SIGINT) asks the loop to stop before its next step, instead of raising
    KeyboardInterrupt wherever the main thread happens to be (inside a DataLoader shutting its
    workers down, it was swallowed and training went on). A second Ctrl-C interrupts at once.

    Only in the main thread of a single-process run: under torchrun the launcher stops the ranks.
    """

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)

    def check(self, iteration: int, last_checkpoint: Optional[int], folder: RunFolder, command: str = "train",
              what: str = "interrupted") -> None:
        """Raise TrainingInterrupted, before the step of ``iteration``, if a stop was asked for; the
        message says where ``alwa-train COMMAND --resume`` would continue the run."""
        if self.requested:
            kept = (f"its last checkpoint is iteration {last_checkpoint} (alwa-train {command} --resume {folder.path} "
                    "continues from there)" if last_checkpoint else "it has no checkpoint yet")
            raise TrainingInterrupted(f"{what} after iteration {iteration}; {kept}")


def loss_columns(model: torch.nn.Module) -> List[str]:
    """The log's loss columns, in the order :func:`training_step` stacks them."""
    return ["loss_cls", "loss_reg", "weighted_cls", "weighted_reg", *[f"loss_{name}" for name in model.extra_losses],
            "loss_total"]


def training_step(training: Training, batch: Batch) -> torch.Tensor:
    """One optimiser step; returns its losses stacked on the device: the :func:`loss_columns` values,
    the squared raw losses (so the log can give each interval's spread, not only its mean), and 1
    where the total loss is not finite."""
    config = training.config
    with torch.autocast(device_type=training.device.type, dtype=torch.float16, enabled=config.amp):
        losses = training.trained(batch.images, batch.gt_boxes, batch.gt_labels, batch.gt_valid)
    weighted_cls, weighted_reg = training.weighting(losses["cls"].float(), losses["reg"].float())
    # The (cls, reg) pair is what the weighting sees; other losses (Faster R-CNN's RoI head) add with weight 1.
    extra = [losses[name].float() for name in training.model.extra_losses]
    total = weighted_cls + weighted_reg + sum(extra)
    training.optimizer.zero_grad(set_to_none=True)
    training.scaler.scale(total).backward()
    if config.clip_grad > 0:
        training.scaler.unscale_(training.optimizer)
        torch.nn.utils.clip_grad_norm_(training.model.parameters(), config.clip_grad)
    training.scaler.step(training.optimizer)
    training.scaler.update()
    training.scheduler.step()
    raw_cls, raw_reg = losses["cls"].detach().float(), losses["reg"].detach().float()
    return torch.stack([raw_cls, raw_reg, weighted_cls.detach(), weighted_reg.detach(), *[e.detach() for e in extra],
                        total.detach(), raw_cls * raw_cls, raw_reg * raw_reg, (~torch.isfinite(total.detach())).float()])


def nonfinite(training: Training, window: LogWindow) -> Tuple[bool, bool]:
    """Whether a step's loss since the last log point, and whether any weight, is non-finite (on any
    rank): one read of the device, made at log and checkpoint points only."""
    tensors = [t for t in itertools.chain(training.model.parameters(), training.model.buffers()) if t.is_floating_point()]
    flags = torch.stack([window.sums[-1] if window.sums is not None else torch.zeros((), device=training.device),
                         torch.stack([~torch.isfinite(t).all() for t in tensors]).any().float()])
    if training.process.distributed:
        dist.all_reduce(flags)
    bad_loss, bad_weights = (flags > 0).tolist()
    return bad_loss, bad_weights


def divergence(bad: Tuple[bool, bool], first: int, last: int, lr: float, folder: RunFolder,
               checkpoint: Optional[int]) -> str:
    """The message of a run stopped by :func:`nonfinite` flags ``bad`` between iterations ``first`` and ``last``."""
    what = {(True, False): "the loss", (False, True): "the weights", (True, True): "the loss and the weights"}[bad]
    kept = (f"{folder.checkpoint} (iteration {checkpoint}) is the last good state" if checkpoint is not None
            else "no checkpoint was written before")
    return (f"training diverged: {what} became non-finite between iterations {first} and {last} (lr {lr:g}); {kept}; "
            "lower --lr, or check the data")


def run_iterations(training: Training, state: LoopState, run_log: Optional[RunLog], folder: RunFolder) -> float:
    """Train from ``state`` to the configured end, logging and checkpointing; returns the training seconds
    (of every session)."""
    config, process = training.config, training.process
    training.model.train()
    batches = Batches(training.train_set, training.sampler, training.device, config.workers)
    names = loss_columns(training.model)
    window = state.window
    last_log_time = session_start = time.perf_counter()
    seconds = lambda now: state.seconds + (now - session_start)  # noqa: E731
    # Checked at each log and checkpoint point, so no checkpoint holds a non-finite model.
    last_checked = state.iteration
    last_checkpoint = state.iteration if state.iteration else None
    # The bar ends its line however the loop ends, so an error message starts a line of its own.
    with StopRequest(active=not process.distributed) as stop, \
            tqdm(total=config.iterations, initial=state.iteration, disable=not (process.is_main and SHOW_PROGRESS), desc="train",
                 dynamic_ncols=True, file=sys.stderr) as progress:
        for iteration in range(state.iteration, config.iterations):
            stop.check(iteration, last_checkpoint, folder)
            window.add(training_step(training, batches.get(iteration)))
            done = iteration + 1
            log_point = done % config.log_interval == 0 or done == config.iterations
            checkpoint_point = done % config.checkpoint_interval == 0 or done == config.iterations
            if not (log_point or checkpoint_point):
                continue
            bad = nonfinite(training, window)
            if log_point:
                now = time.perf_counter()
                logged = window.count
                row = window.row(training, names, done, round(seconds(now), 3))
                on_main(process, lambda: run_log.append(row))
                if process.is_main:
                    progress.set_postfix(cls=f"{row['loss_cls']:.3f}", reg=f"{row['loss_reg']:.3f}",
                                         lam_cls=f"{row['lambda_cls']:.3f}",
                                         it_s=f"{logged / max(now - last_log_time, 1e-9):.1f}")
                progress.update(logged)
                last_log_time = now
            if any(bad):
                lr = training.optimizer.param_groups[0]["lr"]
                raise TrainingDiverged(divergence(bad, last_checked + 1, done, lr, folder, last_checkpoint))
            last_checked = done
            if checkpoint_point:
                save_checkpoint(training, LoopState(done, window, seconds(time.perf_counter())), folder)
                last_checkpoint = done
    return seconds(time.perf_counter())
