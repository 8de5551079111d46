"""Figures of a run: the losses with their per-window statistics and the lambda_cls trajectory
(the view of the paper's figures 3 and 6), and sample detections against the ground truth."""
from __future__ import annotations

from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import run_log  # noqa: E402
from .data import DetectionDataset  # noqa: E402
from .evaluate import ImageDetections  # noqa: E402
from .run_folder import RunFolderError  # noqa: E402


def read_log(path: str) -> Dict[str, np.ndarray]:
    """The log's columns as arrays; a line that cannot be read is an error naming it."""
    columns, rows, unreadable = run_log.read_log(path)
    if unreadable:
        raise RunFolderError(f"{path}: line {unreadable[0]} cannot be read")
    if not rows:
        raise RunFolderError(f"{path}: the log has no rows to plot")
    return {key: np.array([row[key] for row in rows], dtype=np.float64) for key in columns}


def window_statistics(iterations: np.ndarray, means: np.ndarray, stds: np.ndarray, counts: np.ndarray, interval: int):
    """Per window of ``interval`` iterations: its centre, and the mean and standard deviation (ddof 1)
    of the per-iteration values, pooled exactly from the log rows' means, spreads (ddof 0) and counts."""
    windows = (iterations - 1) // interval
    centres, window_means, window_stds = [], [], []
    for window in np.unique(windows):
        chosen = windows == window
        n = counts[chosen].sum()
        total = (means[chosen] * counts[chosen]).sum()
        squares = ((stds[chosen] ** 2 + means[chosen] ** 2) * counts[chosen]).sum()
        mean = total / n
        variance = max(squares - n * mean**2, 0.0) / (n - 1) if n > 1 else 0.0
        centres.append((window + 0.5) * interval)
        window_means.append(mean)
        window_stds.append(np.sqrt(variance))
    return np.array(centres), np.array(window_means), np.array(window_stds)


def plot_losses(log_path: str, interval: int, out_path: str) -> None:
    log = read_log(log_path)
    iterations = log["iteration"]
    figure, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for axis, key, title in ((axes[0], "loss_cls", "classification loss"), (axes[1], "loss_reg", "regression loss")):
        axis.plot(iterations, log[key], color="0.6", linewidth=0.8, label="logged (mean since last log)")
        centres, means, stds = window_statistics(iterations, log[key], log[f"{key}_std"], log["logged_iterations"], interval)
        axis.plot(centres, means, color="C0", marker="o", markersize=3, label=f"window mean ({interval} it.)")
        axis.fill_between(centres, means - stds, means + stds, color="C0", alpha=0.25, label="window mean ± std (per iteration)")
        weighted = "weighted_cls" if key == "loss_cls" else "weighted_reg"
        axis.plot(iterations, log[weighted], color="C3", linewidth=0.8, alpha=0.7, label="weighted")
        axis.set_ylabel(title)
        axis.legend(fontsize=8, loc="upper right")
        axis.grid(alpha=0.3)
    axes[2].plot(iterations, log["lambda_cls"], color="C2", label="λcls")
    axes[2].plot(iterations, log["lambda_reg"], color="C1", linestyle="--", label="λreg")
    axes[2].set_ylabel("loss weight")
    axes[2].set_xlabel("iteration")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)


def plot_comparison(runs: Sequence, interval: int, out_path: str) -> None:
    """Runs side by side: ``runs`` = [(title, log.csv path)]; their unweighted losses (per-window
    means) and λcls over the iterations."""
    figure, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for index, (title, path) in enumerate(runs):
        log = read_log(path)
        iterations = log["iteration"]
        for axis, key in ((axes[0], "loss_cls"), (axes[1], "loss_reg")):
            centres, means, _ = window_statistics(iterations, log[key], log[f"{key}_std"], log["logged_iterations"], interval)
            axis.plot(centres, means, color=f"C{index}", marker="o", markersize=2, label=title)
        axes[2].plot(iterations, log["lambda_cls"], color=f"C{index}", label=title)
    for axis, label in zip(axes, ("classification loss\n(unweighted, window mean)", "regression loss\n(unweighted, window mean)",
                                  "λcls")):
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper right")
    axes[2].set_xlabel("iteration")
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)


def plot_detections(dataset: DetectionDataset, detections: Sequence[ImageDetections], out_path: str, min_score: float = 0.3) -> None:
    """Ground truth dashed green, predictions (score >= ``min_score``) solid red with class and score."""
    count = len(detections)
    columns = min(3, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(dataset.load_image(index))
        annotation = dataset.annotation(index)
        for box, label in zip(annotation.boxes, annotation.labels):
            axis.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, edgecolor="lime",
                                         linestyle="--", linewidth=1.5))
        dets = detections[index]
        for box, score, label in zip(dets.boxes, dets.scores, dets.labels):
            if score < min_score:
                continue
            axis.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, edgecolor="red", linewidth=1.2))
            axis.text(box[0], box[1], f"{dataset.class_names[int(label)]} {score:.2f}", color="white", fontsize=7,
                      bbox=dict(facecolor="red", alpha=0.6, pad=1, linewidth=0))
    figure.suptitle("ground truth (green, dashed) and detections (red)")
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


__all__: List[str] = ["plot_comparison", "plot_losses", "plot_detections", "read_log", "window_statistics"]
