"""The training loop: data, optimiser and schedule, loss weighting, logging, checkpoints, resume,
multi-process training under torchrun, and the final evaluation and plots.

The step itself never waits for the device: losses are accumulated on the device and read
(one sync) only every ``log_interval`` iterations.
"""
from __future__ import annotations

import csv
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .config import TrainConfig
from .data import TrainBatchSampler, build_dataset, collate
from .evaluate import evaluate, predict
from .models import build_detector
from .weighting import make_weighting

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
FINAL_WEIGHTS = "model_final.pt"


@dataclass
class Process:
    """Where this process stands in a (possibly single-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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
    return process


def resolve_device(config: TrainConfig, process: Process) -> torch.device:
    try:
        device = torch.device(config.device)
    except RuntimeError as error:
        raise ValueError(f"device: {config.device!r} is not a device name (cpu, cuda, cuda:N)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {config.device!r} requested but CUDA is not available")
        if process.distributed:
            device = torch.device("cuda", process.local_rank)  # torchrun: one GPU per local rank
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


def save_atomically(payload: Dict[str, object], path: str) -> None:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves half a checkpoint."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str) -> Dict[str, object]:
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_DIR, LAST_CHECKPOINT)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not an alwa_det checkpoint")
    return checkpoint


class RunLog:
    """log.csv, written by the main process only, one row per logged iteration."""

    def __init__(self, path: str, resume_iteration: int):
        self.path = path
        self.rows: List[Dict[str, float]] = []
        if resume_iteration and os.path.isfile(path):
            # Rows past the checkpoint belong to a run that was cut short: they are replayed.
            with open(path) as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= resume_iteration]
        self._rewrite()

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as handle:
            if self.rows:
                writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)

    def append(self, row: Dict[str, float]) -> None:
        first = not self.rows
        self.rows.append(row)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if first:
                writer.writeheader()
            writer.writerow(row)


def train(config: TrainConfig, resume: Optional[str] = None) -> Dict[str, object]:
    """Train, checkpoint, evaluate and plot; returns the metrics (on every rank; only rank 0 writes)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    process = init_process(config)
    device = resolve_device(config, process)
    seed_everything(config.seed)
    train_set = build_dataset(config.dataset, config.train_split, config.image_size, config.data_root, config.seed,
                              config.synthetic_train_images)
    model = build_detector(config, len(train_set.class_names)).to(device)
    weighting = make_weighting(config.weighting, config.cls_weight, config.reg_weight, config.interval,
                               config.alwa_update).to(device)
    # On CUDA the fused SGD takes the AMP scaler's inf check on the device; the unfused step would
    # read it on the host every iteration.
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                fused=True if device.type == "cuda" else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(config, it))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp)

    start_iteration = 0
    if resume:
        checkpoint = load_checkpoint(resume)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        weighting.load_state_dict(checkpoint["weighting"])
        set_rng_state(checkpoint["rng"][min(process.rank, len(checkpoint["rng"]) - 1)])
        start_iteration = int(checkpoint["iteration"])

    out = config.out
    if process.is_main:
        os.makedirs(os.path.join(out, CHECKPOINT_DIR), exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as handle:
            json.dump(config.to_dict(), handle, indent=2)
    run_log = RunLog(os.path.join(out, "log.csv"), start_iteration) if process.is_main else None

    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if process.distributed else model
    sampler = TrainBatchSampler(len(train_set), config.batch_size, config.seed, process.rank, process.world_size)
    per_epoch = len(sampler)
    loader_kwargs = dict(batch_sampler=sampler, collate_fn=collate, num_workers=config.workers)
    model.train()

    progress = tqdm(total=config.iterations, initial=start_iteration, disable=not process.is_main, desc="train",
                    dynamic_ncols=True, file=sys.stderr)
    log_sums: Optional[torch.Tensor] = None
    log_count = 0
    log_names: List[str] = []
    last_log_time = time.perf_counter()
    train_start = time.perf_counter()
    batches = None
    for iteration in range(start_iteration, config.iterations):
        epoch, batch_in_epoch = divmod(iteration, per_epoch)
        if batches is None or batch_in_epoch == 0:
            sampler.set_position(epoch, batch_in_epoch)
            batches = iter(torch.utils.data.DataLoader(train_set, **loader_kwargs))
        batch = next(batches).to(device)

        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=config.amp):
            losses = trained(batch.images, batch.gt_boxes, batch.gt_labels, batch.gt_valid)
        weighted_cls, weighted_reg = weighting(losses["cls"].float(), losses["reg"].float())
        extra = [value.float() for name, value in losses.items() if name not in ("cls", "reg")]
        total = weighted_cls + weighted_reg + sum(extra)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if config.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()

        # Accumulated on the device; read only at log time.
        # Squares too, so the log can give each interval's spread, not only its mean.
        raw_cls, raw_reg = losses["cls"].detach().float(), losses["reg"].detach().float()
        values = torch.stack([raw_cls, raw_reg, weighted_cls.detach(), weighted_reg.detach(),
                              *[e.detach() for e in extra], total.detach(), raw_cls * raw_cls, raw_reg * raw_reg])
        log_sums = values if log_sums is None else log_sums + values
        log_count += 1
        log_names = ["loss_cls", "loss_reg", "weighted_cls", "weighted_reg",
                     *[f"loss_{name}" for name in losses if name not in ("cls", "reg")], "loss_total"]

        done = iteration + 1
        if done % config.log_interval == 0 or done == config.iterations:
            means = log_sums / log_count
            if process.distributed:
                dist.all_reduce(means)
                means /= process.world_size
            now = time.perf_counter()
            *mean_values, cls_square, reg_square = means.tolist()
            row = {"iteration": done, "logged_iterations": log_count, **dict(zip(log_names, mean_values))}
            # Spread of the per-iteration raw losses over the interval (all ranks' when distributed).
            row["loss_cls_std"] = max(cls_square - row["loss_cls"] ** 2, 0.0) ** 0.5
            row["loss_reg_std"] = max(reg_square - row["loss_reg"] ** 2, 0.0) ** 0.5
            lambda_cls, lambda_reg = weighting.weights.float().tolist()
            row.update(lambda_cls=lambda_cls, lambda_reg=lambda_reg, lr=optimizer.param_groups[0]["lr"],
                       seconds=round(now - train_start, 3))
            if process.is_main:
                run_log.append(row)
                progress.set_postfix(cls=f"{row['loss_cls']:.3f}", reg=f"{row['loss_reg']:.3f}", lam_cls=f"{lambda_cls:.3f}",
                                     it_s=f"{log_count / max(now - last_log_time, 1e-9):.1f}")
            progress.update(log_count)
            log_sums, log_count, last_log_time = None, 0, now

        if done % config.checkpoint_interval == 0 or done == config.iterations:
            save_checkpoint(config, process, done, model, optimizer, scheduler, scaler, weighting)
    progress.close()
    train_seconds = time.perf_counter() - train_start

    metrics: Dict[str, object] = {}
    if process.is_main:
        torch.save(model.state_dict(), os.path.join(out, FINAL_WEIGHTS))
        metrics = finish_run(config, model, weighting, device, train_seconds)
    if process.distributed:
        dist.barrier()
    return metrics


def save_checkpoint(config, process, iteration, model, optimizer, scheduler, scaler, weighting) -> None:
    """Every rank's RNG state is gathered so a resumed multi-process run continues exactly too."""
    states = [rng_state()]
    if process.distributed:
        states = [None] * process.world_size
        dist.all_gather_object(states, rng_state())
    if process.is_main:
        payload = {
            "config": config.to_dict(),
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "weighting": weighting.state_dict(),
            "rng": states,
        }
        save_atomically(payload, os.path.join(config.out, CHECKPOINT_DIR, LAST_CHECKPOINT))


def finish_run(config: TrainConfig, model, weighting, device, train_seconds: float) -> Dict[str, object]:
    """metrics.json, losses.png and detections.png in the run folder."""
    from .plots import plot_detections, plot_losses  # matplotlib only when a run finishes

    metrics: Dict[str, object] = {
        "iterations": config.iterations,
        "train_seconds": round(train_seconds, 2),
        "lambda_cls": float(weighting.weights[0]),
        "lambda_reg": float(weighting.weights[1]),
        "final_weights": FINAL_WEIGHTS,
        "config": config.to_dict(),
    }
    if config.evaluate:
        eval_start = time.perf_counter()
        eval_set = build_dataset(config.dataset, config.eval_split, config.image_size, config.data_root, config.seed,
                                 config.synthetic_eval_images)
        metrics.update(evaluate(model, eval_set, device, config.eval_batch_size))
        metrics["eval_seconds"] = round(time.perf_counter() - eval_start, 2)
        shown = min(6, len(eval_set))
        plot_detections(eval_set, predict(model, eval_set, device, config.eval_batch_size, limit=shown),
                        os.path.join(config.out, "detections.png"))
    with open(os.path.join(config.out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    plot_losses(os.path.join(config.out, "log.csv"), config.interval, os.path.join(config.out, "losses.png"))
    return metrics


def evaluate_checkpoint(checkpoint_path: str, dataset: Optional[str], data_root: Optional[str], split: Optional[str],
                        device: str, out: Optional[str]) -> Dict[str, object]:
    """Evaluate a checkpoint (a run folder, a checkpoint file, or model_final.pt beside its config.json)."""
    if os.path.isfile(checkpoint_path) and os.path.basename(checkpoint_path) == FINAL_WEIGHTS:
        config_path = os.path.join(os.path.dirname(checkpoint_path), "config.json")
        if not os.path.isfile(config_path):
            raise ValueError(f"{checkpoint_path}: no config.json beside it to rebuild the model")
        with open(config_path) as handle:
            config = TrainConfig.from_dict(json.load(handle))
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
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
    eval_set = build_dataset(config.dataset, config.eval_split, config.image_size, config.data_root, config.seed,
                             config.synthetic_eval_images)
    model = build_detector(config, len(eval_set.class_names))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint_path}: the weights do not fit a {config.detector} with "
                         f"{len(eval_set.class_names)} classes ({str(error).splitlines()[0]})") from error
    device_obj = torch.device(device)
    model.to(device_obj)
    metrics = evaluate(model, eval_set, device_obj, config.eval_batch_size)
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "eval_metrics.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


