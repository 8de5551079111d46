"""The study's rows, one per finished run, and what the tables, figures and window statistics
make of them: selection, the pairings' rows, mean ± std over seeds, the significance mark, and
the text of a table cell."""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import run_study
from alwa_det.titles import WEIGHTING_TITLES

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


# The weightings of the Table 2 / 3 analogues, as columns: (weighting, rule, statistic).
COLUMNS_T2 = (("fixed", "paper", "raw"), ("alwa1", "paper", "raw"), ("alwa1", "stable", "raw"), ("alwa2", "paper", "raw"),
              ("alwa2", "stable", "raw"), ("alwa2", "paper", "detrended"))


def column_title(weighting: str, rule: str, statistic: str) -> str:
    if weighting == "fixed":
        return "Fixed 1:1"
    return f"{WEIGHTING_TITLES[weighting]} {rule}" + (" detrended" if statistic == "detrended" else "")


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


def pairing_rows(rows: List[dict], detector: str, mode: str, iterations: int, loss: str, init: str, interval: int = 50):
    """(fixed 1:1 rows, ALWA rows with the paper's rule) of one detector, loss and initialisation."""
    common = dict(detector=detector, loss=loss, iterations=iterations, init=init)
    fixed = select(rows, weighting="fixed", cls_weight=1.0, reg_weight=1.0, **common)
    alwa = select(rows, weighting=mode, alwa_update="paper", alwa_statistic="raw", interval=interval, **common)
    return fixed, alwa


def losses_present(rows: List[dict]) -> List[str]:
    """The study's losses (run_study.LOSSES) that ``rows`` hold, in their order."""
    return [loss for loss in run_study.LOSSES if any(r["loss"] == loss for r in rows)]
