"""The study's results: results.csv (one row per finished run), results.md (the tables) and the figures.

    python docs/experiments/study_report.py [--runs runs/study] [--results docs/experiments]

The rows and table cells are study_rows.py's, the window statistics study_windows.py's, the
figures study_figures.py's; this script puts them together.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_study  # noqa: E402
from alwa_det.titles import DETECTOR_TITLES, LOSS_TITLES, WEIGHTING_TITLES  # noqa: E402
from study_figures import figure_conditions, figure_fixed, figure_trajectories  # noqa: E402
from study_rows import (COLUMNS_T2, cell_text, collect, column_title, lambda_text, pairing_rows,  # noqa: E402,F401
                        recorded_rows, select, write_csv)
from study_windows import harness_check, trend_analysis, windows_by_condition  # noqa: E402


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
    lines = [f"{WEIGHTING_TITLES[first['weighting']]}, {first['alwa_update']} rule, RetinaNet + {LOSS_TITLES[first['loss']]}; "
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
                cells = [f"{DETECTOR_TITLES[detector]} + {LOSS_TITLES[loss]} "
                         f"({WEIGHTING_TITLES[mode]})", cell_text(value(scratch_fixed), None),
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
            lines.append(f"| {DETECTOR_TITLES[detector]} + {LOSS_TITLES[loss]} "
                         f"({WEIGHTING_TITLES[mode]}) | {cell_text([r['map50'] for r in alwa], reference)} | "
                         f"{cell_text([r['map50'] for r in alwa_c], reference)} | {lambda_text(alwa_c)} |")
    return lines


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
    lines += table_weightings(rows, "retinanet", run_study.STUDY_ITERATIONS, run_study.LOSSES)
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
