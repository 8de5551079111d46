"""The study's results: results.csv (one row per finished run), results.md (the tables) and the figures.

    python docs/experiments/study_report.py [--runs runs/study] [--results docs/experiments]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_study  # noqa: E402

COLUMNS = ("parts", "name", "detector", "loss", "weighting", "alwa_update", "alwa_statistic", "cls_weight", "reg_weight",
           "interval", "iterations", "seed", "init", "map50", "map", "lambda_cls_final", "train_seconds", "eval_seconds",
           "wall_seconds", "commit", "torch", "date")


NUMBERS = {"cls_weight": float, "reg_weight": float, "interval": int, "iterations": int, "seed": int, "map50": float,
           "map": float, "lambda_cls_final": float, "train_seconds": float, "eval_seconds": float, "wall_seconds": float}


def recorded_rows(path: str) -> Dict[str, dict]:
    """The rows of an earlier results.csv, by cell name: the record of runs whose folders are not here
    (a run folder is ~6 MB; the study's are not kept in the repository)."""
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            row = {k: (NUMBERS[k](v) if k in NUMBERS and v not in ("", None) else v) for k, v in row.items()}
            row.setdefault("init", "scratch")
            row["init"] = row["init"] or "scratch"
            rows[row["name"]] = row
    return rows


def collect(runs: str, cells: List[dict], recorded: Optional[Dict[str, dict]] = None) -> List[dict]:
    """One row per finished cell of ``cells``: from its run folder, else from ``recorded`` (with
    ``logged`` False: the figures and window statistics need the run's log)."""
    rows = []
    for c in cells:
        folder = os.path.join(runs, c["name"])
        if not run_study.finished(runs, c["name"]):
            if recorded and c["name"] in recorded:
                rows.append({**recorded[c["name"]], "parts": "+".join(c["parts"]), "part": c["parts"][0], "logged": False})
            continue
        with open(os.path.join(folder, "metrics.json")) as handle:
            metrics = json.load(handle)
        with open(os.path.join(folder, "study.json")) as handle:
            stamp = json.load(handle)
        v = c["values"]
        rows.append({"parts": "+".join(c["parts"]), "part": c["parts"][0], "name": c["name"], **{k: v[k] for k in (
            "detector", "loss", "weighting", "alwa_update", "alwa_statistic", "cls_weight", "reg_weight", "interval",
            "iterations", "seed", "init")}, "logged": True,
            "map50": metrics["map50"], "map": metrics.get("map", float("nan")), "lambda_cls_final": metrics["lambda_cls"],
            "train_seconds": metrics["train_seconds"], "eval_seconds": metrics.get("eval_seconds"),
            "wall_seconds": stamp.get("wall_seconds"), "commit": stamp.get("commit", "") + ("+dirty" if stamp.get("dirty") else ""),
            "torch": stamp.get("torch"), "date": stamp.get("date")})
    return rows


def write_csv(rows: List[dict], path: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


TITLES = {"fixed": "Fixed", "alwa1": "ALWA_1", "alwa2": "ALWA_2"}
LOSS_TITLES = {"l1": "L1", "smooth_l1": "SmoothL1", "ciou": "CIoU"}
# The weightings of the Table 2 / 3 analogues, as columns: (weighting, rule, statistic).
COLUMNS_T2 = (("fixed", "paper", "raw"), ("alwa1", "paper", "raw"), ("alwa1", "stable", "raw"), ("alwa2", "paper", "raw"),
              ("alwa2", "stable", "raw"), ("alwa2", "paper", "detrended"))


def column_title(weighting: str, rule: str, statistic: str) -> str:
    if weighting == "fixed":
        return "Fixed 1:1"
    return f"{TITLES[weighting]} {rule}" + (" detrended" if statistic == "detrended" else "")


def stats(values: Sequence[float]):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


def significant(a: Sequence[float], b: Sequence[float]) -> bool:
    """|mean(a) - mean(b)| above twice its standard error (Welch), with 3 or more seeds on each side."""
    if len(a) < 3 or len(b) < 3:
        return False
    ma, sa, na = stats(a)
    mb, sb, nb = stats(b)
    return abs(ma - mb) > 2 * math.sqrt(sa**2 / na + sb**2 / nb)


def select(rows: List[dict], **values) -> List[dict]:
    return [r for r in rows if all(r[k] == v for k, v in values.items())]


def cell_text(values: List[float], reference: Optional[List[float]]) -> str:
    if not values:
        return "—"
    mean, std, n = stats([100 * v for v in values])
    text = f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"
    if reference:
        delta = mean - stats([100 * v for v in reference])[0]
        text += f" ({delta:+.1f}{'*' if significant(values, reference) else ''})"
    if n < len(run_study.SEEDS):
        text += f" [{n} seed{'s' if n > 1 else ''}]"
    return text


def lambda_text(rows: List[dict]) -> str:
    if not rows:
        return "—"
    values = [r["lambda_cls_final"] for r in rows]
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def table_weightings(rows: List[dict], detector: str, iterations: int, losses: Sequence[str]) -> List[str]:
    base = dict(detector=detector, iterations=iterations, interval=50)
    header = ["Loss"] + [column_title(*c) for c in COLUMNS_T2]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lambda_lines = ["| " + " | ".join(["Loss (final λcls, min–max over seeds)"] + header[2:]) + " |",
                    "|" + "---|" * (len(header) - 1)]
    for loss in losses:
        fixed = [r["map50"] for r in select(rows, loss=loss, weighting="fixed", cls_weight=1.0, reg_weight=1.0,
                                            **{**base, "interval": 50})]
        cells, lambdas = [LOSS_TITLES[loss]], [LOSS_TITLES[loss]]
        for weighting, rule, statistic in COLUMNS_T2:
            if weighting == "fixed":
                cells.append(cell_text(fixed, None))
                continue
            chosen = select(rows, loss=loss, weighting=weighting, alwa_update=rule, alwa_statistic=statistic, **base)
            cells.append(cell_text([r["map50"] for r in chosen], fixed))
            lambdas.append(lambda_text(chosen))
        lines.append("| " + " | ".join(cells) + " |")
        lambda_lines.append("| " + " | ".join(lambdas) + " |")
    return lines + [""] + lambda_lines


def table_fixed(rows: List[dict]) -> List[str]:
    pairs = run_study.FIXED_PAIRS + run_study.EQUAL_PAIRS
    losses = ("l1", "ciou")
    lines = ["| λcls : λreg | " + " | ".join(LOSS_TITLES[l] for l in losses) + " |", "|---|" + "---|" * len(losses)]
    for cls_weight, reg_weight in pairs:
        cells = [f"{cls_weight:g} : {reg_weight:g}"]
        for loss in losses:
            base = dict(detector="retinanet", loss=loss, weighting="fixed", iterations=run_study.STUDY_ITERATIONS)
            reference = [r["map50"] for r in select(rows, cls_weight=1.0, reg_weight=1.0, **base)]
            values = [r["map50"] for r in select(rows, cls_weight=cls_weight, reg_weight=reg_weight, **base)]
            is_reference = (cls_weight, reg_weight) == (1.0, 1.0)
            cells.append(cell_text(values, None if is_reference else reference))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table_intervals(rows: List[dict]) -> List[str]:
    chosen = [r for r in rows if "table7" in r["parts"].split("+")]
    if not chosen:
        return ["(not run yet)"]
    first = chosen[0]
    base = dict(detector="retinanet", loss=first["loss"], iterations=run_study.STUDY_ITERATIONS)
    fixed = [r["map50"] for r in select(rows, weighting="fixed", cls_weight=1.0, reg_weight=1.0, **base)]
    lines = [f"{TITLES[first['weighting']]}, {first['alwa_update']} rule, RetinaNet + {LOSS_TITLES[first['loss']]}; "
             f"fixed 1:1: {cell_text(fixed, None)}", "", "| C | map50 (Δ vs fixed) | final λcls |", "|---|---|---|"]
    for interval in sorted({50, *run_study.INTERVALS}):
        picked = select(rows, weighting=first["weighting"], alwa_update=first["alwa_update"], alwa_statistic="raw",
                        interval=interval, **base)
        lines.append(f"| {interval} | {cell_text([r['map50'] for r in picked], fixed)} | {lambda_text(picked)} |")
    return lines


def table_longer(rows: List[dict]) -> List[str]:
    lines = ["| RetinaNet + CIoU | " + " | ".join(f"{n} iterations" for n in (run_study.STUDY_ITERATIONS,
                                                                             run_study.LONG_ITERATIONS)) + " |",
             "|---|---|---|"]
    for weighting, rule, statistic in (("fixed", "paper", "raw"), ("alwa2", "paper", "raw"), ("alwa2", "stable", "raw")):
        cells = [column_title(weighting, rule, statistic)]
        for iterations in (run_study.STUDY_ITERATIONS, run_study.LONG_ITERATIONS):
            base = dict(detector="retinanet", loss="ciou", iterations=iterations)
            fixed = [r["map50"] for r in select(rows, weighting="fixed", cls_weight=1.0, reg_weight=1.0, **base)]
            if weighting == "fixed":
                cells.append(cell_text(fixed, None))
            else:
                picked = select(rows, weighting=weighting, alwa_update=rule, alwa_statistic=statistic, interval=50, **base)
                cells.append(cell_text([r["map50"] for r in picked], fixed) + f"; λcls {lambda_text(picked)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------------- the windows ALWA saw


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


def replay(cls, reg, interval: int, mode: str, rule: str, detrend: bool, first_window: int = 0):
    """λcls after each window of ALWA's rule applied to a fixed loss stream (the losses of a fixed-weight
    run): what the rule does on this data, without its effect on training."""
    import numpy as np

    c, r = window_split(cls, interval), window_split(reg, interval)
    lam, out = 1.0, []
    for index, (cw, rw) in enumerate(zip(c, r)):
        if index < first_window:  # windows before the first one the rule reads leave λcls as it is
            out.append(lam)
            continue
        cw = cw * lam if rule == "paper" else cw
        raw_c, det_c, _ = window_stats(cw[None])
        raw_r, det_r, _ = window_stats(rw[None])
        sc, sr = (det_c[0], det_r[0]) if detrend else (raw_c[0], raw_r[0])
        if mode == "alwa1":
            sc, sr = sc + cw.mean(), sr + rw.mean()
        if sc > sr and sr > 0:
            lam = sr / sc
        out.append(lam)
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
    for loss in LOSSES_PRESENT(fixed):
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
    for loss in LOSSES_PRESENT(fixed):
        for mode, rule, detrend, first in (("alwa2", "paper", False, 0), ("alwa2", "stable", False, 0),
                                           ("alwa2", "paper", True, 0), ("alwa2", "stable", True, 0),
                                           ("alwa1", "paper", False, 0), ("alwa2", "paper", False, 2)):
            trajectories = []
            for r in select(fixed, loss=loss):
                log = read_losses(runs, r["name"])
                trajectories.append(replay(log["loss_cls"], log["loss_reg"], 50, mode, rule, detrend, first))
            t = np.median(np.stack(trajectories), axis=0)
            title = f"{TITLES[mode]} {rule}" + (" detrended" if detrend else "") + (
                f", from window {first + 1} (after the warm-up)" if first else "")
            lines.append(f"| {LOSS_TITLES[loss]} | {title} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} | {t[-1]:.2f} |")
    intervals = sorted({50, *run_study.INTERVALS})
    lines += ["", "ALWA_2 with the paper's rule replayed on the same streams for each window C (λcls after the "
              "first window, and the last; median over runs): the first window's share of the warm-up changes with C.",
              "", "| Loss | " + " | ".join(f"C = {c}" for c in intervals) + " |", "|---|" + "---|" * len(intervals)]
    for loss in LOSSES_PRESENT(fixed):
        cells = [LOSS_TITLES[loss]]
        for interval in intervals:
            trajectories = []
            for r in select(fixed, loss=loss):
                log = read_losses(runs, r["name"])
                trajectories.append(replay(log["loss_cls"], log["loss_reg"], interval, "alwa2", "paper", False))
            t = np.median(np.stack(trajectories), axis=0)
            cells.append(f"{t[0]:.2f} → {t[-1]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def harness_check(runs: str, rows: List[dict]) -> List[str]:
    """The rule recomputed from each raw-statistic ALWA run's own log (the values it recorded: the
    weighted losses for the paper rule, the unweighted for stable) against the λcls the run logged:
    whether the harness feeds ALWA what the study says it does."""
    import numpy as np

    worst, checked = 0.0, 0
    for r in rows:
        if r["weighting"] == "fixed" or r["alwa_statistic"] != "raw" or r["detector"] != "retinanet":
            continue
        log = read_losses(runs, r["name"])
        interval = int(r["interval"])
        paper = r["alwa_update"] == "paper"
        cls = log["weighted_cls"] if paper else log["loss_cls"]
        reg = log["weighted_reg"] if paper else log["loss_reg"]
        c, g = window_split(cls, interval), window_split(reg, interval)
        lam = 1.0
        for k in range(len(c)):
            sc, sg = window_stats(c[k][None])[0][0], window_stats(g[k][None])[0][0]
            if r["weighting"] == "alwa1":
                sc, sg = sc + c[k].mean(), sg + g[k].mean()
            if sc > sg and sg > 0:
                lam = sg / sc
            logged = log["lambda_cls"][(k + 1) * interval - 1]  # logged after the window's last call
            worst = max(worst, abs(lam - logged) / logged)
            lam = logged  # the next window from the run's own λ (the log's losses are rounded)
        checked += 1
    if not checked:
        return []
    return ["", f"Harness check: the rule recomputed from the logged losses of each of the {checked} ALWA runs "
            f"(raw statistic) gives the λcls that run logged at every window, to a relative {worst:.1e} "
            "(the log's float32 rounding): ALWA saw the losses the tables describe."]


def LOSSES_PRESENT(rows: List[dict]) -> List[str]:  # noqa: N802
    return [loss for loss in ("l1", "smooth_l1", "ciou") if any(r["loss"] == loss for r in rows)]


# --------------------------------------------------------------------------- the pretrained condition


def pairing_rows(rows: List[dict], detector: str, mode: str, iterations: int, loss: str, init: str, interval: int = 50):
    """(fixed 1:1 rows, ALWA rows with the paper's rule) of one detector, loss and initialisation."""
    common = dict(detector=detector, loss=loss, iterations=iterations, init=init)
    fixed = select(rows, weighting="fixed", cls_weight=1.0, reg_weight=1.0, **common)
    alwa = select(rows, weighting=mode, alwa_update="paper", alwa_statistic="raw", interval=interval, **common)
    return fixed, alwa


def table_conditions(rows: List[dict]) -> List[str]:
    """The paper's pairings from scratch and from the pretrained backbone, side by side: map50 and map,
    ALWA against fixed weights of the same initialisation, and pretrained fixed against scratch fixed."""
    lines = []
    for metric in ("map50", "map"):
        header = ["Detector + loss", "Fixed 1:1, scratch", "ALWA, scratch", "Fixed 1:1, pretrained",
                  "ALWA, pretrained", "final λcls scratch", "final λcls pretrained"]
        lines += [f"{metric} (%): ALWA with the paper's rule and C = 50 in brackets against fixed weights of the same "
                  "initialisation; pretrained fixed in brackets against scratch fixed", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for detector, mode, iterations in run_study.PAIRING:
            for loss in run_study.PAIRING_LOSSES:
                scratch_fixed, scratch_alwa = pairing_rows(rows, detector, mode, iterations, loss, "scratch")
                fixed, alwa = pairing_rows(rows, detector, mode, iterations, loss, "pretrained")
                value = lambda chosen: [r[metric] for r in chosen if isinstance(r[metric], float) and r[metric] == r[metric]]  # noqa: E731
                cells = [f"{'RetinaNet' if detector == 'retinanet' else 'Faster R-CNN'} + {LOSS_TITLES[loss]} "
                         f"({TITLES[mode]})", cell_text(value(scratch_fixed), None),
                         cell_text(value(scratch_alwa), value(scratch_fixed)),
                         cell_text(value(fixed), value(scratch_fixed)), cell_text(value(alwa), value(fixed)),
                         lambda_text(scratch_alwa), lambda_text(alwa)]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    interval = 100
    lines += [f"The paper's window, C = {interval}, pretrained (map50 %, against pretrained fixed 1:1):", "",
              "| Detector + loss | ALWA, C = 50 | ALWA, C = 100 | final λcls, C = 100 |", "|---|---|---|---|"]
    for detector, mode, iterations in run_study.PAIRING:
        for loss in run_study.PAIRING_LOSSES:
            fixed, alwa = pairing_rows(rows, detector, mode, iterations, loss, "pretrained")
            _, alwa_c = pairing_rows(rows, detector, mode, iterations, loss, "pretrained", interval)
            reference = [r["map50"] for r in fixed]
            lines.append(f"| {'RetinaNet' if detector == 'retinanet' else 'Faster R-CNN'} + {LOSS_TITLES[loss]} "
                         f"({TITLES[mode]}) | {cell_text([r['map50'] for r in alwa], reference)} | "
                         f"{cell_text([r['map50'] for r in alwa_c], reference)} | {lambda_text(alwa_c)} |")
    return lines


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
                name = f"{'RetinaNet' if detector == 'retinanet' else 'Faster R-CNN'} + {LOSS_TITLES[loss]} ({TITLES[mode]})"
                cells = [name, init, str(len(fixed)), f"{np.median(r2c):.2f}", f"{np.median(r2g):.2f}",
                         *[f"{np.median(np.concatenate(v)):.3f}" for v in ratio.values()],
                         f"{np.median(first):.3f}" if first else "—", lambda_text(alwa)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


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
        axis.set_title(f"{'RetinaNet' if detector == 'retinanet' else 'Faster R-CNN'} + {TITLES[mode]} "
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


# --------------------------------------------------------------------------- figures


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


def report(runs: str, results: str) -> None:
    os.makedirs(results, exist_ok=True)
    recorded = recorded_rows(os.path.join(results, "results.csv"))
    cells = run_study.grid(run_study.PARTS, [])
    rows = collect(runs, cells, recorded)
    cells = run_study.grid(run_study.PARTS, rows)  # table7's cells depend on the main grid
    rows = collect(runs, cells, recorded)
    write_csv(rows, os.path.join(results, "results.csv"))
    everything, rows = rows, [r for r in rows if r["init"] == "scratch"]  # the sections before the pretrained one
    logged = [r for r in rows if r["logged"]]
    finished_names = {r["name"] for r in everything}
    missing = [c["name"] for c in cells if c["name"] not in finished_names]
    commits = sorted({r["commit"] for r in everything})
    env = run_study.environment()
    lines = ["# Does ALWA help? The study's tables", "",
             f"Generated by `docs/experiments/study_report.py` from {len(everything)} finished runs of {len(cells)} "
             f"(runs trained at commit(s) {', '.join(commits) or '—'}; torch {env['torch']}; report {env['date']}).",
             "map50 in %, mean ± std over seeds (ddof 1); in brackets the change against fixed 1:1 weights of the "
             "same detector, loss and schedule; `*` where that change exceeds twice its standard error (Welch) with "
             "3 seeds on each side; `[n seeds]` where fewer than 3 finished.", "",
             f"## Table 2 analogue: RetinaNet, {run_study.STUDY_ITERATIONS} iterations, C = 50", ""]
    lines += table_weightings(rows, "retinanet", run_study.STUDY_ITERATIONS, ("l1", "smooth_l1", "ciou"))
    lines += ["", f"## Table 1 analogue: fixed weights, RetinaNet, {run_study.STUDY_ITERATIONS} iterations", ""]
    lines += table_fixed(rows)
    lines += ["", f"## Table 3 analogue: Faster R-CNN (ALWA on the RPN pair), {run_study.FRCNN_ITERATIONS} iterations", ""]
    lines += table_weightings(rows, "faster_rcnn", run_study.FRCNN_ITERATIONS, ("ciou",))
    lines += ["", f"## Table 7 analogue: the window C, {run_study.STUDY_ITERATIONS} iterations", ""]
    lines += table_intervals(rows)
    lines += ["", "## A 3x longer schedule", ""]
    lines += table_longer(rows)
    lines += ["", "## What the windows hold: trend against noise", ""]
    lines += trend_analysis(runs, logged)
    lines += harness_check(runs, [r for r in everything if r["logged"]])
    if figure_trajectories(runs, logged, os.path.join(results, "lambda_trajectories.png")):
        lines += ["", "![λcls trajectories and window statistics](lambda_trajectories.png)"]
    elif os.path.isfile(os.path.join(results, "lambda_trajectories.png")):
        lines += ["", "![λcls trajectories and window statistics](lambda_trajectories.png) (drawn from runs whose "
                  "folders are not here)"]
    lines += ["", "## The pretrained condition: the backbone first trained on another task", "",
              "The backbone is pretrained by `alwa-train pretrain` (multi-label classification of six other shapes "
              f"on images of their own generator stream; alwa-train pretrain's defaults: 15000 iterations of batch 16), then the detector is trained "
              "as in the grid above with `--backbone-weights` (FPN and heads fresh, every layer trained).", ""]
    lines += table_conditions(everything)
    lines += ["", "What the rule reads in each condition (fixed 1:1 runs with a log here):", ""]
    lines += windows_by_condition(runs, everything)
    if figure_conditions(runs, everything, os.path.join(results, "lambda_conditions.png")):
        lines += ["", "![λcls from scratch and pretrained](lambda_conditions.png)"]
    if figure_fixed(rows, os.path.join(results, "fixed_weights.png")):
        lines += ["", "![map50 against fixed λcls](fixed_weights.png)"]
    lines += ["", f"## Missing cells ({len(missing)})", ""]
    lines += [f"- {name}" for name in missing] or ["none"]
    with open(os.path.join(results, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(results, "environment.json"), "w") as handle:
        json.dump({**env, "run_commits": commits, "finished": len(everything), "cells": len(cells)}, handle, indent=1)
    print(f"{len(everything)} of {len(cells)} cells finished -> {results}/results.csv, results.md")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=os.path.join(run_study.REPO, "runs", "study"))
    parser.add_argument("--results", default=HERE)
    args = parser.parse_args(argv)
    report(args.runs, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
