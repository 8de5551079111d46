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
           "interval", "iterations", "seed", "map50", "map", "lambda_cls_final", "train_seconds", "eval_seconds",
           "wall_seconds", "commit", "torch", "date")


def collect(runs: str, cells: List[dict]) -> List[dict]:
    """One row per finished cell of ``cells``."""
    rows = []
    for c in cells:
        folder = os.path.join(runs, c["name"])
        if not run_study.finished(runs, c["name"]):
            continue
        with open(os.path.join(folder, "metrics.json")) as handle:
            metrics = json.load(handle)
        with open(os.path.join(folder, "study.json")) as handle:
            stamp = json.load(handle)
        v = c["values"]
        rows.append({"parts": "+".join(c["parts"]), "part": c["parts"][0], "name": c["name"], **{k: v[k] for k in (
            "detector", "loss", "weighting", "alwa_update", "alwa_statistic", "cls_weight", "reg_weight", "interval",
            "iterations", "seed")},
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


def report(runs: str, results: str) -> None:
    os.makedirs(results, exist_ok=True)
    cells = run_study.grid(run_study.PARTS, [])
    rows = collect(runs, cells)
    cells = run_study.grid(run_study.PARTS, rows)  # table7's cells depend on the main grid
    rows = collect(runs, cells)
    write_csv(rows, os.path.join(results, "results.csv"))
    print(f"{len(rows)} of {len(cells)} cells finished -> {results}/results.csv")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=os.path.join(run_study.REPO, "runs", "study"))
    parser.add_argument("--results", default=HERE)
    args = parser.parse_args(argv)
    report(args.runs, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
