"""What the windows ALWA saw hold: per-window statistics of the fixed-weight runs' losses, the
rules replayed on those loss streams, and the rule recomputed from each ALWA run's own log."""
from __future__ import annotations

import os
from typing import List

import run_study
from alwa_det.titles import DETECTOR_TITLES, LOSS_TITLES, WEIGHTING_TITLES
from study_rows import lambda_text, losses_present, pairing_rows, select

def read_losses(runs: str, name: str):
    """Per-iteration columns of a cell's log.csv (the study logs every iteration)."""
    from alwa_det.plots import read_log

    return read_log(os.path.join(runs, name, "log.csv"))


def window_split(values, interval: int):
    import numpy as np

    count = len(values) // interval
    return np.asarray(values[: count * interval], dtype=np.float64).reshape(count, interval)


def window_stats(windows):
    """Per window: raw std (ddof 1), detrended std (ddof 2) and the trend's share of the variance (R²)."""
    import numpy as np

    t = np.arange(windows.shape[1], dtype=np.float64)
    t = t - t.mean()
    deviation = windows - windows.mean(axis=1, keepdims=True)
    total = (deviation**2).sum(axis=1)
    slope = (deviation * t).sum(axis=1) / (t**2).sum()
    residual = np.maximum(total - slope**2 * (t**2).sum(), 0.0)
    n = windows.shape[1]
    return np.sqrt(total / (n - 1)), np.sqrt(residual / (n - 2)), 1 - residual / np.maximum(total, 1e-300)


def replay(cls, reg, interval: int, mode: str, rule: str, statistic: str = "raw", first_window: int = 0,
           cls_weight: float = 1.0, reg_weight: float = 1.0):
    """λcls after each window of ALWA (alwa_ext.ALWA, the rule training uses) fed a logged loss
    stream: on a fixed-weight run's losses, what the rule does on this data without its effect on
    training. Windows before `first_window` are not fed, so they leave λcls as it is."""
    import numpy as np
    import torch
    from alwa_ext import ALWA

    alwa = ALWA(mode, interval, cls_weight, reg_weight, update=rule, sync=False, statistic=statistic)
    count = len(cls) // interval * interval
    cls = torch.as_tensor(np.asarray(cls[:count], dtype=np.float64))
    reg = torch.as_tensor(np.asarray(reg[:count], dtype=np.float64))
    out = [cls_weight] * first_window
    for index in range(first_window * interval, count):
        alwa(cls[index], reg[index])
        if (index + 1) % interval == 0:
            out.append(float(alwa.weights[0]))
    return np.array(out)


def trend_analysis(runs: str, rows: List[dict]) -> List[str]:
    """How much of a window's spread is the loss curve's trend, measured on the fixed-weight runs'
    per-iteration (unweighted) losses, and what the rule makes of it."""
    import numpy as np

    fixed = select(rows, detector="retinanet", weighting="fixed", cls_weight=1.0, reg_weight=1.0,
                   iterations=run_study.STUDY_ITERATIONS)
    if not fixed:
        return ["(no finished fixed-weight run yet)"]
    lines = ["Windows of C = 50 iterations of the fixed 1:1 runs' unweighted losses (per-iteration log), "
             "median over runs; R² is the share of the window's variance that its least-squares line explains.", "",
             "| Loss | windows | R² cls | R² reg | raw σreg/σcls | detrended σreg/σcls |", "|---|---|---|---|---|---|"]
    for loss in losses_present(fixed):
        per = {"first": [], "2–4": [], "5–8": [], "9–12": []}
        for r in select(fixed, loss=loss):
            log = read_losses(runs, r["name"])
            c, g = window_split(log["loss_cls"], 50), window_split(log["loss_reg"], 50)
            raw_c, det_c, r2_c = window_stats(c)
            raw_g, det_g, r2_g = window_stats(g)
            for key, chosen in (("first", slice(0, 1)), ("2–4", slice(1, 4)), ("5–8", slice(4, 8)), ("9–12", slice(8, 12))):
                per[key].append((r2_c[chosen], r2_g[chosen], (raw_g / raw_c)[chosen], (det_g / det_c)[chosen]))
        for key, values in per.items():
            if not values:
                continue
            columns = [np.median(np.concatenate([v[i] for v in values])) for i in range(4)]
            lines.append(f"| {LOSS_TITLES[loss]} | {key} | {columns[0]:.2f} | {columns[1]:.2f} | {columns[2]:.2f} | "
                         f"{columns[3]:.2f} |")
    lines += ["", "The rules replayed on the same fixed-weight loss streams (λcls after windows 1, 2, 3, and the last; "
              "median over runs): what the rule does on this data, apart from its effect on training.", "",
              "| Loss | rule | after 1 | after 2 | after 3 | last |", "|---|---|---|---|---|---|"]
    for loss in losses_present(fixed):
        for mode, rule, statistic, first in (("alwa2", "paper", "raw", 0), ("alwa2", "stable", "raw", 0),
                                              ("alwa2", "paper", "detrended", 0), ("alwa2", "stable", "detrended", 0),
                                              ("alwa1", "paper", "raw", 0), ("alwa2", "paper", "raw", 2)):
            trajectories = []
            for r in select(fixed, loss=loss):
                log = read_losses(runs, r["name"])
                trajectories.append(replay(log["loss_cls"], log["loss_reg"], 50, mode, rule, statistic, first))
            t = np.median(np.stack(trajectories), axis=0)
            title = f"{WEIGHTING_TITLES[mode]} {rule}" + (" detrended" if statistic == "detrended" else "") + (
                f", from window {first + 1} (after the warm-up)" if first else "")
            lines.append(f"| {LOSS_TITLES[loss]} | {title} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} | {t[-1]:.2f} |")
    intervals = sorted({50, *run_study.INTERVALS})
    lines += ["", "ALWA_2 with the paper's rule replayed on the same streams for each window C (λcls after the "
              "first window, and the last; median over runs): the first window's share of the warm-up changes with C.",
              "", "| Loss | " + " | ".join(f"C = {c}" for c in intervals) + " |", "|---|" + "---|" * len(intervals)]
    for loss in losses_present(fixed):
        cells = [LOSS_TITLES[loss]]
        for interval in intervals:
            trajectories = []
            for r in select(fixed, loss=loss):
                log = read_losses(runs, r["name"])
                trajectories.append(replay(log["loss_cls"], log["loss_reg"], interval, "alwa2", "paper"))
            t = np.median(np.stack(trajectories), axis=0)
            cells.append(f"{t[0]:.2f} → {t[-1]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def harness_check(runs: str, rows: List[dict]) -> List[str]:
    """ALWA replayed on each raw-statistic ALWA run's own logged (unweighted) losses against the λcls
    the run logged after each window: whether the harness feeds ALWA what the study says it does."""
    import numpy as np

    worst, checked = 0.0, 0
    for r in rows:
        if r["weighting"] == "fixed" or r["alwa_statistic"] != "raw" or r["detector"] != "retinanet":
            continue
        log = read_losses(runs, r["name"])
        interval = int(r["interval"])
        replayed = replay(log["loss_cls"], log["loss_reg"], interval, r["weighting"], r["alwa_update"],
                          cls_weight=float(r.get("cls_weight", 1.0)), reg_weight=float(r.get("reg_weight", 1.0)))
        # λcls is logged after each call: a window's update shows at its last call.
        logged = np.asarray(log["lambda_cls"], dtype=np.float64)[interval - 1 :: interval][: len(replayed)]
        worst = max(worst, float(np.max(np.abs(replayed[: len(logged)] - logged) / logged)))
        checked += 1
    if not checked:
        return []
    return ["", f"Harness check: ALWA replayed on the logged losses of each of the {checked} ALWA runs "
            f"(raw statistic) gives the λcls that run logged at every window, to a relative {worst:.1e} "
            "(the log's float32 rounding): ALWA saw the losses the tables describe."]


def windows_by_condition(runs: str, rows: List[dict]) -> List[str]:
    """What the rule reads in each condition: the fixed 1:1 runs' unweighted (cls, reg) losses per window
    of C = 50 (Faster R-CNN: the RPN pair), median over seeds; and λcls after the first window and at the
    end of the ALWA runs."""
    import numpy as np

    lines = ["| Detector + loss | init | runs | R² cls, window 1 | R² reg, window 1 | σreg/σcls 1 | 2–4 | 5–8 | 9–12 | "
             "ALWA λcls after window 1 | final λcls |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for detector, mode, iterations in run_study.PAIRING:
        for loss in run_study.PAIRING_LOSSES:
            for init in run_study.INITS:
                fixed, alwa = pairing_rows(rows, detector, mode, iterations, loss, init)
                fixed = [r for r in fixed if r.get("logged")]
                if not fixed:
                    continue
                r2c, r2g, ratio = [], [], {k: [] for k in ("1", "2–4", "5–8", "9–12")}
                for r in fixed:
                    log = read_losses(runs, r["name"])
                    raw_c, _, r2_c = window_stats(window_split(log["loss_cls"], 50))
                    raw_g, _, r2_g = window_stats(window_split(log["loss_reg"], 50))
                    r2c.append(r2_c[0]), r2g.append(r2_g[0])
                    for key, chosen in (("1", slice(0, 1)), ("2–4", slice(1, 4)), ("5–8", slice(4, 8)), ("9–12", slice(8, 12))):
                        ratio[key].append((raw_g / raw_c)[chosen])
                first = [read_losses(runs, r["name"])["lambda_cls"][49] for r in alwa if r.get("logged")]
                name = f"{DETECTOR_TITLES[detector]} + {LOSS_TITLES[loss]} ({WEIGHTING_TITLES[mode]})"
                cells = [name, init, str(len(fixed)), f"{np.median(r2c):.2f}", f"{np.median(r2g):.2f}",
                         *[f"{np.median(np.concatenate(v)):.3f}" for v in ratio.values()],
                         f"{np.median(first):.3f}" if first else "—", lambda_text(alwa)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines
