"""The training loop: data, optimiser and schedule, loss weighting, logging, checkpoints, resume,
multi-process training under torchrun, and the final evaluation and plots.

The step itself never waits for the device: losses are accumulated on the device and read
(one sync) only every ``log_interval`` iterations.
"""
from __future__ import annotations

import itertools
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .config import TrainConfig, resume_conflicts
from .data import Batch, TrainBatchSampler, build_dataset, collate
from .errors import TrainingDiverged, TrainingInterrupted
from .evaluate import evaluate, predict
from .backbone import backbone_architecture, load_backbone_weights
from .models import build_detector
from .run_folder import (CHECKPOINT_DIR, CONFIG_FILE, DETECTIONS_PLOT, EVAL_METRICS_FILE, FINAL_WEIGHTS, LAST_CHECKPOINT,
                         LOG_FILE, LOSS_PLOT, METRICS_FILE, RunFolder, RunFolderError, describe, read_json, run_folder_of,
                         same_folder, save_atomically, write_json_atomically)
from .run_log import RunLog, log_columns
from .weighting import make_weighting

# The training progress bar; off in the worker processes of a command that shows the progress of
# several runs itself (alwa-train demo).
SHOW_PROGRESS = True


@dataclass
class Process:
    """Where this process stands in a (possibly single-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # init_process joined the group (else the caller did, and leaves it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_process(config: TrainConfig) -> Process:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Process()
    process = Process(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        on_cuda = config.device.startswith("cuda")
        if on_cuda and torch.cuda.is_available():
            torch.cuda.set_device(process.local_rank)  # before NCCL starts, so it binds the right GPU
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
        process.owns_group = True
    return process


def leave_process(process: Process, cleanly: bool) -> None:
    """Leave the group that :func:`init_process` joined, before the process exits: after a barrier
    when the run ended normally, so no rank tears gloo down while another still talks to it (a rank
    exiting with a live group can die of SIGABRT, 'terminate called without an active exception');
    at once after an error, which the ranks raise together (see :func:`on_main`)."""
    if not process.owns_group or not dist.is_initialized():
        return
    try:
        if cleanly:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def resolve_device(name: str, process: Optional[Process] = None) -> torch.device:
    """The torch device of a config's ``cpu`` / ``cuda`` / ``cuda:N``; under torchrun, the local rank's GPU."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {name!r} requested but CUDA is not available")
        if process is not None and process.distributed:
            device = torch.device("cuda", process.local_rank)  # torchrun: one GPU per local rank
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device: {name!r} requested but there are {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    return device


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


def load_checkpoint(path: str) -> Dict[str, object]:
    """A checkpoint file, or a run folder's checkpoints/last.pt; a damaged file is an error naming it."""
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_DIR, LAST_CHECKPOINT)
    if not os.path.isfile(path):
        raise RunFolderError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise RunFolderError(f"checkpoint {path} cannot be read ({type(error).__name__}: {describe(error)})") from error
    if not isinstance(checkpoint, dict) or not {"config", "model", "iteration"} <= set(checkpoint):
        raise RunFolderError(f"checkpoint {path} is not an alwa_det checkpoint")
    return checkpoint


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


def restore(training: Training, checkpoint: Dict[str, object]) -> "LoopState":
    """Load a checkpoint's learning state, and this rank's RNG state and log window."""
    training.model.load_state_dict(checkpoint["model"])
    training.optimizer.load_state_dict(checkpoint["optimizer"])
    training.scheduler.load_state_dict(checkpoint["scheduler"])
    training.scaler.load_state_dict(checkpoint["scaler"])
    training.weighting.load_state_dict(checkpoint["weighting"])
    training.backbone_weights_sha256 = checkpoint.get("backbone_weights_sha256")
    rank = training.process.rank
    set_rng_state(checkpoint["rng"][min(rank, len(checkpoint["rng"]) - 1)])
    window = LogWindow()
    if "log_window" in checkpoint:
        window.load_state_dict(checkpoint["log_window"][min(rank, len(checkpoint["log_window"]) - 1)], training.device)
    return LoopState(int(checkpoint["iteration"]), window, float(checkpoint.get("train_seconds", 0.0)))


def _ignore_interrupts(worker_id: int) -> None:
    """A loader worker leaves Ctrl-C to the main process, which stops between steps and shuts it down
    (a worker dying of it mid-batch would make the main process fail on a lost worker instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Batches:
    """The training batches from any iteration on: the sampler is placed at (epoch, batch) of the
    iteration, so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, training: Training):
        self.training = training
        self.per_epoch = len(training.sampler)
        self.loader_kwargs = dict(batch_sampler=training.sampler, collate_fn=collate, num_workers=training.config.workers,
                                  worker_init_fn=_ignore_interrupts if training.config.workers else None)
        self.iterator = None

    def get(self, iteration: int) -> Batch:
        epoch, batch_in_epoch = divmod(iteration, self.per_epoch)
        if self.iterator is None or batch_in_epoch == 0:
            self.iterator = None  # the finished epoch's workers shut down before the next epoch's start
            self.training.sampler.set_position(epoch, batch_in_epoch)
            self.iterator = iter(torch.utils.data.DataLoader(self.training.train_set, **self.loader_kwargs))
        return next(self.iterator).to(self.training.device)


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


def nonfinite(training: Training, window: "LogWindow") -> Tuple[bool, bool]:
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


class LogWindow:
    """The step values since the last log point, summed on the device; read once, at the log point."""

    def __init__(self):
        self.sums: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1

    def state_dict(self) -> Dict[str, object]:
        """For a checkpoint between log points: the resumed run's next row then covers the same
        iterations, with the same sums, as an uninterrupted run's."""
        return {"count": self.count, "sums": None if self.sums is None else self.sums.cpu()}

    def load_state_dict(self, state: Dict[str, object], device: torch.device) -> None:
        self.count = int(state["count"])
        self.sums = None if state["sums"] is None else state["sums"].to(device)

    def row(self, training: Training, names: List[str], iteration: int, seconds: float) -> Dict[str, float]:
        """The log row of the window ending at ``iteration`` (means over all ranks), and a fresh window."""
        means = self.sums / self.count
        if training.process.distributed:
            dist.all_reduce(means)
            means /= training.process.world_size
        *mean_values, cls_square, reg_square, _ = means.tolist()
        row = {"iteration": iteration, "logged_iterations": self.count, **dict(zip(names, mean_values))}
        # Spread of the per-iteration raw losses over the interval (all ranks' when distributed).
        row["loss_cls_std"] = max(cls_square - row["loss_cls"] ** 2, 0.0) ** 0.5
        row["loss_reg_std"] = max(reg_square - row["loss_reg"] ** 2, 0.0) ** 0.5
        lambda_cls, lambda_reg = training.weighting.weights.float().tolist()
        row.update(lambda_cls=lambda_cls, lambda_reg=lambda_reg, lr=training.optimizer.param_groups[0]["lr"],
                   seconds=seconds)
        self.sums, self.count = None, 0
        return row


@dataclass
class LoopState:
    """Where the loop stands; a checkpoint saves it beside the learning state."""

    iteration: int = 0
    window: LogWindow = field(default_factory=LogWindow)
    seconds: float = 0.0  # training time of the sessions before this one, up to the checkpoint


def run_iterations(training: Training, state: LoopState, run_log: Optional[RunLog], folder: RunFolder) -> float:
    """Train from ``state`` to the configured end, logging and checkpointing; returns the training seconds
    (of every session)."""
    config, process = training.config, training.process
    training.model.train()
    batches = Batches(training)
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
            if stop.requested:
                kept = (f"its last checkpoint is iteration {last_checkpoint} (alwa-train train --resume {folder.path} "
                        "continues from there)" if last_checkpoint else "it has no checkpoint yet")
                raise TrainingInterrupted(f"interrupted after iteration {iteration}; {kept}")
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


def on_main(process: Process, action, share: bool = False):
    """``action()`` on the main process; an error there is raised on every process, so none is left
    waiting for the main one at the next collective. Returns the main process's result, on every
    process when ``share`` (else None elsewhere)."""
    failure, result = None, None
    if process.is_main:
        try:
            result = action()
        except (ValueError, OSError) as error:
            failure = error
    if process.distributed:
        outcome = [None if failure is None else str(failure), result if share else None]
        dist.broadcast_object_list(outcome, src=0)
        if failure is None and outcome[0] is not None:
            raise RunFolderError(outcome[0])
        if share:
            result = outcome[1]
    if failure is not None:
        raise failure
    return result


def resumable_checkpoint(folder: RunFolder, config: TrainConfig) -> Dict[str, object]:
    """The folder's checkpoint, if ``config`` may continue it: the same run, not shortened."""
    checkpoint = load_checkpoint(folder.checkpoint)
    conflicts = resume_conflicts(checkpoint["config"], config.to_dict())
    if conflicts:
        raise RunFolderError(f"{folder.checkpoint}: the run's config differs in {', '.join(conflicts)}; a resumed run "
                             "can change only its length, device, workers, threads, logging and evaluation")
    iteration = int(checkpoint["iteration"])
    if config.iterations < iteration:
        raise RunFolderError(f"iterations: {config.iterations} is below the {iteration} iterations the checkpoint "
                             f"{folder.checkpoint} has trained; a run cannot be shortened (give --iterations {iteration} "
                             "or more)")
    return checkpoint


def readable_metrics(folder: RunFolder) -> Optional[Dict[str, object]]:
    """The folder's metrics.json; None when there is none, or (with a warning naming it) when it cannot
    be read: the run's final checkpoint finishes the run again."""
    path = folder.file(METRICS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return read_json(path)
    except RunFolderError as error:
        print(f"warning: {error}; the run's last checkpoint will be evaluated again", file=sys.stderr)
        return None


def finished_metrics(folder: RunFolder, iteration: int) -> Optional[Dict[str, object]]:
    """The metrics of a run that is finished at ``iteration``, else None."""
    metrics = readable_metrics(folder) if os.path.isfile(folder.file(FINAL_WEIGHTS)) else None
    return metrics if metrics is not None and metrics.get("iterations") == iteration else None


def train(config: TrainConfig, resume: Optional[str] = None, overwrite: bool = False) -> Dict[str, object]:
    """Train, checkpoint, evaluate and plot; returns the metrics on the main process ({} on the others,
    which write nothing).

    A fresh run goes into ``config.out``, which must be empty unless ``overwrite``; ``resume``
    names a run folder (or its checkpoints/last.pt) whose run continues in that folder.
    """
    if resume and overwrite:
        raise RunFolderError("give resume or overwrite, not both")
    folder = RunFolder(run_folder_of(resume) if resume else config.out)
    if resume and not same_folder(folder.path, config.out):
        raise RunFolderError(f"resume: the run in {folder.path} continues there, but out is {config.out!r}")
    if config.threads:
        torch.set_num_threads(config.threads)
    process = init_process(config)
    cleanly = False
    try:
        metrics = _train_as(process, config, folder, resume, overwrite)
        cleanly = True
        return metrics
    finally:
        leave_process(process, cleanly)


def _train_as(process: Process, config: TrainConfig, folder: RunFolder, resume: Optional[str], overwrite: bool
              ) -> Dict[str, object]:
    """:func:`train` in this process of the run."""
    device = resolve_device(config.device, process)
    # What can fail on bad data or options fails before the folder is claimed, so it leaves no trace.
    checkpoint = resumable_checkpoint(folder, config) if resume else None
    start_iteration = int(checkpoint["iteration"]) if checkpoint else 0
    if checkpoint and start_iteration == config.iterations:
        finished = on_main(process, lambda: finished_metrics(folder, start_iteration), share=True)
        if finished is not None:
            if process.is_main:
                print(f"{folder.path} is finished at iteration {start_iteration}; nothing to train "
                      f"(give --iterations above {start_iteration} to continue)", file=sys.stderr)
            return finished
    training = build_training(config, process, device, fresh=checkpoint is None)
    on_main(process, lambda: folder.claim(fresh=not resume, overwrite=overwrite))
    try:
        state = restore(training, checkpoint) if checkpoint else LoopState()
        run_log = on_main(process, lambda: start_files(folder, config, training.model, start_iteration))
        train_seconds = run_iterations(training, state, run_log, folder)

        def finish() -> Dict[str, object]:
            save_atomically(training.model.state_dict(), folder.file(FINAL_WEIGHTS))
            return finish_run(config, folder, training.model, training.weighting, device, train_seconds,
                              {"backbone_weights_sha256": training.backbone_weights_sha256} if config.backbone_weights else {})

        # The main process writes the run's files; the others wait for it (and share its failure).
        return on_main(process, finish) or {}
    finally:
        folder.release()


def start_files(folder: RunFolder, config: TrainConfig, model: torch.nn.Module, start_iteration: int) -> RunLog:
    """config.json, and log.csv up to ``start_iteration`` (main process only, once the resume has worked)."""
    write_json_atomically(config.to_dict(), folder.file(CONFIG_FILE))
    columns = log_columns(loss_columns(model))
    if start_iteration:
        return RunLog.resumed(folder.file(LOG_FILE), columns, start_iteration)
    return RunLog.fresh(folder.file(LOG_FILE), columns)


def save_checkpoint(training: Training, state: LoopState, folder: RunFolder) -> None:
    """Every rank's RNG state and log window are gathered so a resumed multi-process run continues
    exactly too."""
    process = training.process
    per_rank = [(rng_state(), state.window.state_dict())]
    if process.distributed:
        gathered = [None] * process.world_size
        dist.all_gather_object(gathered, per_rank[0])
        per_rank = gathered

    def write() -> None:
        payload = {
            "config": training.config.to_dict(),
            "iteration": state.iteration,
            "train_seconds": state.seconds,
            "model": training.model.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "scaler": training.scaler.state_dict(),
            "weighting": training.weighting.state_dict(),
            "backbone_weights_sha256": training.backbone_weights_sha256,
            "rng": [rng for rng, _ in per_rank],
            "log_window": [window for _, window in per_rank],
        }
        save_atomically(payload, folder.checkpoint)

    on_main(process, write)  # a failed write (a full disk) stops every rank, not only the main one


def finish_run(config: TrainConfig, folder: RunFolder, model, weighting, device, train_seconds: float,
               recorded: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """metrics.json (with ``recorded`` in it), losses.png and detections.png in the run folder."""
    from .plots import plot_detections, plot_losses  # matplotlib only when a run finishes

    metrics: Dict[str, object] = {
        "iterations": config.iterations,
        "train_seconds": round(train_seconds, 2),
        "lambda_cls": float(weighting.weights[0]),
        "lambda_reg": float(weighting.weights[1]),
        "final_weights": FINAL_WEIGHTS,
        "config": config.to_dict(),
        **(recorded or {}),
    }
    if config.evaluate:
        eval_start = time.perf_counter()
        eval_set = build_dataset(config.dataset, config.eval_split, config.image_size, config.data_root, config.seed,
                                 config.synthetic_eval_images)
        metrics.update(evaluate(model, eval_set, device, config.eval_batch_size))
        metrics["eval_seconds"] = round(time.perf_counter() - eval_start, 2)
        shown = min(6, len(eval_set))
        plot_detections(eval_set, predict(model, eval_set, device, config.eval_batch_size, limit=shown),
                        folder.file(DETECTIONS_PLOT))
    plot_losses(folder.file(LOG_FILE), config.interval, folder.file(LOSS_PLOT))
    # Last: a metrics.json of this length says the run is finished.
    write_json_atomically(metrics, folder.file(METRICS_FILE))
    return metrics


def evaluate_checkpoint(checkpoint_path: str, dataset: Optional[str], data_root: Optional[str], split: Optional[str],
                        device: str, out: Optional[str]) -> Dict[str, object]:
    """Evaluate a checkpoint (a run folder, a checkpoint file, or model_final.pt beside its config.json)."""
    if os.path.isfile(checkpoint_path) and os.path.basename(checkpoint_path) == FINAL_WEIGHTS:
        config_path = os.path.join(os.path.dirname(checkpoint_path), CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise ValueError(f"{checkpoint_path}: no config.json beside it to rebuild the model")
        config = TrainConfig.from_dict(read_json(config_path))
        try:
            state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file
            raise RunFolderError(f"{checkpoint_path} cannot be read ({type(error).__name__}: {describe(error)})") from error
    else:
        checkpoint = load_checkpoint(checkpoint_path)
        config = TrainConfig.from_dict(checkpoint["config"])
        state = checkpoint["model"]
    overrides = {"device": device}
    if dataset is not None and dataset != config.dataset:
        overrides.update(dataset=dataset, data_root=data_root)
        if split is None:
            from .config import preset

            overrides["eval_split"] = preset(dataset, config.detector).get("eval_split", "eval")
    elif data_root is not None:
        overrides["data_root"] = data_root
    if split is not None:
        overrides["eval_split"] = split
    config = TrainConfig.from_dict({**config.to_dict(), **overrides, "amp": False})
    device_obj = resolve_device(config.device)
    eval_set = build_dataset(config.dataset, config.eval_split, config.image_size, config.data_root, config.seed,
                             config.synthetic_eval_images)
    model = build_detector(config, len(eval_set.class_names))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint_path}: the weights do not fit a {config.detector} with "
                         f"{len(eval_set.class_names)} classes ({str(error).splitlines()[0]})") from error
    model.to(device_obj)
    metrics = evaluate(model, eval_set, device_obj, config.eval_batch_size)
    if out:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"--out {out}: cannot create the folder ({describe(error)})") from error
        write_json_atomically(metrics, os.path.join(out, EVAL_METRICS_FILE))
    return metrics


