"""The study's figures: λcls over iterations of the main configurations and of the pairings from
scratch and pretrained, the per-window statistics the rule reads, and map50 against fixed λcls."""
from __future__ import annotations

from typing import List

import run_study
from alwa_det.titles import DETECTOR_TITLES, LOSS_TITLES, WEIGHTING_TITLES
from study_rows import COLUMNS_T2, column_title, pairing_rows, select, stats
from study_windows import read_losses, window_split, window_stats

def figure_trajectories(runs: str, rows: List[dict], path: str) -> bool:
    """λcls of the main configurations (RetinaNet + CIoU, every seed), and the per-window
    statistics of the fixed-weight runs' losses that the rule reads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    base = dict(detector="retinanet", loss="ciou", iterations=run_study.STUDY_ITERATIONS, interval=50)
    fixed = select(rows, weighting="fixed", cls_weight=1.0, reg_weight=1.0, **base)
    if not fixed:
        return False
    figure, axes = plt.subplots(3, 1, figsize=(8.5, 10), sharex=True)
    for index, (weighting, rule, statistic) in enumerate(COLUMNS_T2[1:]):
        for k, r in enumerate(select(rows, weighting=weighting, alwa_update=rule, alwa_statistic=statistic, **base)):
            log = read_losses(runs, r["name"])
            axes[0].plot(log["iteration"], log["lambda_cls"], color=f"C{index}", alpha=0.8, linewidth=1.2,
                         label=column_title(weighting, rule, statistic) if k == 0 else None)
    axes[0].set_ylabel("λcls (RetinaNet + CIoU,\nevery seed)")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, loc="center right")
    centres = None
    for key, color, title in (("loss_cls", "C0", "classification"), ("loss_reg", "C3", "regression")):
        raws, dets, r2s = [], [], []
        for r in fixed:
            log = read_losses(runs, r["name"])
            raw, det, r2 = window_stats(window_split(log[key], 50))
            raws.append(raw), dets.append(det), r2s.append(r2)
        count = min(len(x) for x in raws)
        centres = (np.arange(count) + 0.5) * 50
        axes[1].plot(centres, np.mean([x[:count] for x in raws], axis=0), color=color, marker="o", markersize=3,
                     label=f"{title}: std of the window")
        axes[1].plot(centres, np.mean([x[:count] for x in dets], axis=0), color=color, linestyle="--", marker="x",
                     markersize=3, label=f"{title}: std about the window's trend line")
        axes[2].plot(centres, np.mean([x[:count] for x in r2s], axis=0), color=color, marker="o", markersize=3,
                     label=title)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("per-window spread of the\nunweighted losses (fixed 1:1)")
    axes[1].legend(fontsize=8)
    axes[2].set_ylabel("trend's share of the\nwindow variance (R²)")
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("iteration (windows of C = 50)")
    axes[2].legend(fontsize=8)
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def figure_conditions(runs: str, rows: List[dict], path: str) -> bool:
    """λcls over iterations of the paper's pairings, from scratch (dashed) and pretrained (solid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(run_study.PAIRING), 1, figsize=(8.5, 7), sharey=True)
    drawn = False
    for axis, (detector, mode, iterations) in zip(axes, run_study.PAIRING):
        for index, loss in enumerate(run_study.PAIRING_LOSSES):
            for init, style in (("scratch", "--"), ("pretrained", "-")):
                _, alwa = pairing_rows(rows, detector, mode, iterations, loss, init)
                for k, r in enumerate(x for x in alwa if x.get("logged")):
                    log = read_losses(runs, r["name"])
                    axis.plot(log["iteration"], log["lambda_cls"], color=f"C{index}", linestyle=style, alpha=0.8,
                              linewidth=1.2, label=f"{LOSS_TITLES[loss]}, {init}" if k == 0 else None)
                    drawn = True
        axis.set_title(f"{DETECTOR_TITLES[detector]} + {WEIGHTING_TITLES[mode]} "
                       "(paper's rule, C = 50), every seed", fontsize=10)
        axis.set_ylabel("λcls")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    axes[-1].set_xlabel("iteration")
    if drawn:
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    plt.close(figure)
    return drawn


def figure_fixed(rows: List[dict], path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    drawn = False
    for index, loss in enumerate(("l1", "ciou")):
        xs, means, stds = [], [], []
        for cls_weight, _ in run_study.FIXED_PAIRS:
            values = [100 * r["map50"] for r in select(rows, detector="retinanet", loss=loss, weighting="fixed",
                                                         cls_weight=cls_weight, reg_weight=1.0,
                                                         iterations=run_study.STUDY_ITERATIONS)]
            if len(values) >= 2:
                mean, std, _ = stats(values)
                xs.append(cls_weight), means.append(mean), stds.append(std)
        if xs:
            drawn = True
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=f"C{index}", label=LOSS_TITLES[loss])
    if not drawn:
        plt.close(figure)
        return False
    axis.set_xscale("log", base=2)
    axis.set_xlabel("λcls (λreg = 1)")
    axis.set_ylabel("map50 (%), mean ± std over seeds")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
