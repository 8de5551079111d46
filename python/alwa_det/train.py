"""Training a detector into its run folder: claiming the folder, resuming, the loop, then the final
evaluation and plots; :func:`train_or_reuse` also reuses or continues the run a folder holds.

Multi-process training runs under torchrun: every process calls :func:`train`, the main one
writes the run's files.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Dict, Optional

import torch

from .checkpoint import (LoopState, load_checkpoint, restore, resumable_checkpoint, resume_conflicts, shortened,
                         training_folder)
from .config import TrainConfig
from .data import build_dataset
from .distributed import Process, init_process, leave_process, on_main, resolve_device
from .evaluate import evaluate, predict
from .loop import build_training, loss_columns, run_iterations
from .run_folder import (CONFIG_FILE, DETECTIONS_PLOT, FINAL_WEIGHTS, LOG_FILE, LOSS_PLOT, METRICS_FILE, RunFolder,
                         RunFolderError, read_json, save_atomically, write_json_atomically)
from .run_log import RunLog, log_columns


def train(config: TrainConfig, resume: Optional[str] = None, overwrite: bool = False) -> Dict[str, object]:
    """Train, checkpoint, evaluate and plot; returns the metrics on the main process ({} on the others,
    which write nothing).

    A fresh run goes into ``config.out``, which must be empty unless ``overwrite``; ``resume``
    names a run folder (or its checkpoints/last.pt) whose run continues in that folder.
    """
    folder = training_folder(config.out, resume, overwrite)
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


def train_or_reuse(config: TrainConfig, overwrite: bool = False) -> Dict[str, object]:
    """Train and evaluate the run ``config`` describes in its folder ``config.out``; returns its metrics.

    A folder holding a finished run of the same config is reused as it is; one holding that run
    unfinished continues it from its checkpoint (a checkpoint of the same config, up to
    ``config.iterations``); an empty folder gets a new run. A folder holding a run of another
    config is an error, unless ``overwrite``: then the run is trained anew in it. This is what
    ``alwa-train compare`` and ``demo`` do for each of their runs.
    """
    folder = RunFolder(config.out)
    metrics = readable_metrics(folder)
    if metrics is not None and config.is_saved_as(metrics.get("config")):
        return metrics
    if os.path.isfile(folder.checkpoint):
        saved = load_checkpoint(folder.checkpoint)
        conflicts = resume_conflicts(saved["config"], config.to_dict()) + (["iterations"] if shortened(saved, config) else [])
        if not conflicts:
            return train(config, resume=folder.path)
        if not overwrite:
            raise ValueError(f"{folder.path} holds a run of another configuration (it differs in {', '.join(conflicts)}); "
                             "pass --overwrite to train the cell again, or choose another --out")
    return train(config, overwrite=overwrite)


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
