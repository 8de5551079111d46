"""The study "Does ALWA help?": fixed weights against ALWA on the harness's synthetic data.

    python docs/experiments/run_study.py                      # every part, 2 runs at a time, resumable
    python docs/experiments/run_study.py --parts table2_retinanet,table1 --jobs 1
    python docs/experiments/run_study.py --report-only        # tables, CSV and figures from what finished

Each run is one cell of the grid, in its own run folder under ``--runs`` (default runs/study/);
a folder whose metrics.json is a finished run of the same configuration is reused, an interrupted
one is continued from its checkpoint (``alwa_det.train.train_or_reuse``, what ``alwa-train compare``
uses), so killing the study and starting it again loses at most one checkpoint interval per
running cell. The results go to docs/experiments/: ``results.csv`` (one row per run),
``results.md`` (the tables), the figures, and ``environment.json`` (commit, torch, date).

The schedule of the study is the demo's (synthetic preset: RetinaNet or Faster R-CNN, batch 8,
128 px, C = 50, warm-up 100, tenfold lr drops at 75% and 90%) shortened to ``STUDY_ITERATIONS``,
with one log row per iteration so the analysis sees every loss value ALWA saw.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence

from alwa_ext.kinds import ALWA_MODES, ALWA_UPDATES

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

STUDY_ITERATIONS = 600        # the study's schedule (the demo's is 1500)
LONG_ITERATIONS = 3 * STUDY_ITERATIONS
FRCNN_ITERATIONS = 600
SEEDS = (0, 1, 2)
LOSSES = ("l1", "smooth_l1", "ciou")
# Table 1 of the paper: fixed weights λcls:λreg (λreg = 1), and two equal pairs (a scale only).
FIXED_PAIRS = ((0.25, 1.0), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0), (1.5, 1.0), (2.0, 1.0))
FIXED_CORE = ((0.25, 1.0), (0.5, 1.0), (1.0, 1.0), (2.0, 1.0))  # trained first (part table1; the rest: table1_more)
EQUAL_PAIRS = ((0.5, 0.5), (2.0, 2.0))  # CIoU only (the budget)
INTERVALS = (20, 100, 200, 500)  # Table 7 (C = 50, the preset, is the main grid's)

# The pretrained condition: each detector with the paper's pairing (RetinaNet + ALWA_2, Faster R-CNN +
# ALWA_1), fixed 1:1 beside it, its backbone first trained on another task (alwa_det.pretrain);
# "pairing" holds the same cells from scratch, to compare with (most are cells of the parts above).
PAIRING = (("retinanet", "alwa2", STUDY_ITERATIONS), ("faster_rcnn", "alwa1", FRCNN_ITERATIONS))
PAIRING_LOSSES = ("ciou", "l1")
INITS = ("scratch", "pretrained")
# The pretraining the pretrained cells start from (alwa_det.pretrain.PretrainConfig; under --runs).
PRETRAINING = {"threads": 2}  # alwa-train pretrain's defaults, on both cores
PRETRAIN_FOLDER = "pretrain"

PARTS = ("table2_retinanet", "table1", "table1_more", "detrended", "table3_faster_rcnn", "table7", "longer",
         "pretrained", "pretrained_c100", "pairing")
# The order the cells are trained in (part, losses): the questions the study answers first come first, and
# the CIoU cells (the demo's loss) before the others of a part, so a study cut short by its time
# budget has whole cells of three seeds where it has any.
STAGES = (("pretrained", None, None), ("pairing", None, (("fixed", "paper"), ("alwa2", "paper"))),
          ("pretrained_c100", None, (("alwa2", "paper"),)), ("pairing", None, None), ("pretrained_c100", None, None),
          ("table2_retinanet", ("ciou",), None), ("table1", ("ciou",), None),
          ("table2_retinanet", ("l1",), (("fixed", "paper"), ("alwa2", "paper"), ("alwa2", "stable"))),
          ("detrended", ("ciou",), None), ("table2_retinanet", ("l1",), None),
          ("longer", None, (("fixed", "paper"), ("alwa2", "paper"))), ("table7", None, None),
          ("detrended", ("l1",), None), ("table1", ("l1",), None), ("table2_retinanet", ("smooth_l1",), None),
          ("longer", None, None), ("table1_more", None, None), ("table3_faster_rcnn", None, None),
          ("detrended", ("smooth_l1",), None))


def cell(part: str, **values) -> Dict[str, object]:
    base = {"detector": "retinanet", "loss": "ciou", "weighting": "fixed", "cls_weight": 1.0, "reg_weight": 1.0,
            "interval": 50, "alwa_update": "paper", "alwa_statistic": "raw", "iterations": STUDY_ITERATIONS,
            "seed": 0, "init": "scratch"}
    base.update(values)
    if base["weighting"] == "fixed":  # ALWA's options mean nothing to fixed weights: one cell, whatever they say
        base.update(interval=50, alwa_update="paper", alwa_statistic="raw")
    return {"part": part, "values": base}


def cell_name(values: Dict[str, object]) -> str:
    v = values
    if v["weighting"] == "fixed":
        how = f"fixed-{v['cls_weight']:g}x{v['reg_weight']:g}"
    else:
        how = f"{v['weighting']}-{v['alwa_update']}" + ("-detrended" if v["alwa_statistic"] == "detrended" else "")
        how += f"-c{v['interval']}"
    pretrained = "-pretrained" if v["init"] == "pretrained" else ""
    return f"{v['detector']}-{v['loss']}-{how}-it{v['iterations']}{pretrained}-seed{v['seed']}"


def pairing_cells(part: str, init: str, interval: int, with_fixed: bool) -> List[dict]:
    cells = []
    for detector, mode, iterations in PAIRING:
        for loss in PAIRING_LOSSES:
            for seed in SEEDS:
                common = dict(detector=detector, loss=loss, iterations=iterations, seed=seed, init=init)
                if with_fixed:
                    cells.append(cell(part, **common))
                cells.append(cell(part, weighting=mode, interval=interval, **common))
    return cells


def alwa_cells(part: str, detector: str, iterations: int, losses: Sequence[str], statistic: str = "raw") -> List[dict]:
    cells = []
    for loss in losses:
        for seed in SEEDS:
            cells.append(cell(part, detector=detector, loss=loss, iterations=iterations, seed=seed))
            for mode in ALWA_MODES:
                for rule in ALWA_UPDATES:
                    cells.append(cell(part, detector=detector, loss=loss, weighting=mode, alwa_update=rule,
                                      alwa_statistic=statistic, iterations=iterations, seed=seed))
    return cells


def best_alwa(rows: List[dict]) -> Optional[dict]:
    """The RetinaNet (loss, mode, rule) of the main grid with the largest mean change against fixed."""
    main = [r for r in rows if r["part"] == "table2_retinanet" or "table2_retinanet" in r["parts"].split("+")]
    best, best_delta = None, None
    for loss in LOSSES:
        fixed = [r["map50"] for r in main if r["loss"] == loss and r["weighting"] == "fixed"]
        if len(fixed) < len(SEEDS):
            continue
        for mode in ALWA_MODES:
            for rule in ALWA_UPDATES:
                values = [r["map50"] for r in main if r["loss"] == loss and r["weighting"] == mode
                          and r["alwa_update"] == rule and r["alwa_statistic"] == "raw"]
                if len(values) < len(SEEDS):
                    continue
                delta = sum(values) / len(values) - sum(fixed) / len(fixed)
                if best_delta is None or delta > best_delta:
                    best, best_delta = {"loss": loss, "weighting": mode, "alwa_update": rule}, delta
    return best


def grid(parts: Iterable[str], rows: List[dict], losses: Optional[Sequence[str]] = None,
         weightings: Optional[Sequence[tuple]] = None) -> List[dict]:
    """The cells of ``parts`` (of ``losses`` and (weighting, rule) ``weightings`` only, when given), in
    order, without duplicates (a cell shared by two parts runs once)."""
    cells: List[dict] = []
    for part in parts:
        if part == "table2_retinanet":
            cells += alwa_cells(part, "retinanet", STUDY_ITERATIONS, ("ciou", "l1", "smooth_l1"))
        elif part in ("table1", "table1_more"):
            for loss in ("ciou", "l1"):
                for seed in SEEDS:
                    pairs = FIXED_CORE if part == "table1" else tuple(p for p in FIXED_PAIRS if p not in FIXED_CORE) + (
                        EQUAL_PAIRS if loss == "ciou" else ())
                    for cls_weight, reg_weight in pairs:
                        cells.append(cell(part, loss=loss, cls_weight=cls_weight, reg_weight=reg_weight, seed=seed))
        elif part == "detrended":
            for loss in ("ciou", "l1", "smooth_l1"):
                for seed in SEEDS:
                    cells.append(cell(part, loss=loss, weighting="alwa2", alwa_update="paper",
                                      alwa_statistic="detrended", seed=seed))
        elif part == "table3_faster_rcnn":
            for loss in ("ciou",):
                for seed in SEEDS:
                    cells.append(cell(part, detector="faster_rcnn", loss=loss, iterations=FRCNN_ITERATIONS, seed=seed))
                    for mode, rule in (("alwa1", "paper"), ("alwa2", "paper"), ("alwa2", "stable")):
                        cells.append(cell(part, detector="faster_rcnn", loss=loss, weighting=mode, alwa_update=rule,
                                          iterations=FRCNN_ITERATIONS, seed=seed))
        elif part == "table7":
            best = best_alwa(rows) or {"loss": "ciou", "weighting": "alwa2", "alwa_update": "paper"}
            for seed in SEEDS:
                for interval in INTERVALS:
                    cells.append(cell(part, interval=interval, seed=seed, **best))
        elif part == "longer":
            for seed in SEEDS:
                cells.append(cell(part, iterations=LONG_ITERATIONS, seed=seed))
                for rule in ALWA_UPDATES:
                    cells.append(cell(part, weighting="alwa2", alwa_update=rule, iterations=LONG_ITERATIONS, seed=seed))
        elif part == "pretrained":
            cells += pairing_cells(part, "pretrained", 50, with_fixed=True)
        elif part == "pretrained_c100":  # the paper's window
            cells += pairing_cells(part, "pretrained", 100, with_fixed=False)
        elif part == "pairing":
            cells += pairing_cells(part, "scratch", 50, with_fixed=True)
        else:
            raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    unique: Dict[str, dict] = {}
    for c in cells:
        if losses is not None and c["values"]["loss"] not in losses:
            continue
        if weightings is not None and (c["values"]["weighting"], c["values"]["alwa_update"]) not in weightings:
            continue
        name = cell_name(c["values"])
        if name in unique:
            unique[name]["parts"].append(c["part"])
        else:
            unique[name] = {"name": name, "parts": [c["part"]], "values": c["values"]}
    return list(unique.values())


# --------------------------------------------------------------------------- running


def environment() -> Dict[str, str]:
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "--short=12", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "python", "alwa_ext", "csrc")),
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _quiet_worker(log_path: str) -> None:
    """A worker's stderr (the progress bars) goes to a file, not the study's log."""
    handle = open(log_path, "a")
    os.dup2(handle.fileno(), 2)


def pretraining(runs: str):
    from alwa_det.pretrain import make_pretrain_config

    return make_pretrain_config({**PRETRAINING, "out": os.path.join(runs, PRETRAIN_FOLDER)})


def cell_config(name: str, values: Dict[str, object], runs: str):
    """The harness configuration of a cell: its values, its folder, one log row per iteration, and
    for the pretrained condition the backbone that :func:`pretraining` makes."""
    from alwa_det.config import make_config

    values = dict(values)
    if values.pop("init") == "pretrained":
        values["backbone_weights"] = os.path.join(pretraining(runs).out, "backbone.pt")
    return make_config({**values, "out": os.path.join(runs, name), "log_interval": 1, "checkpoint_interval": 100})


def run_cell(name: str, values: Dict[str, object], runs: str) -> Dict[str, object]:
    from alwa_det.train import train_or_reuse

    config = cell_config(name, values, runs)
    out = config.out
    started = time.time()
    # A cell killed before its first checkpoint left a log and a config but nothing to continue:
    # it starts again. Any other folder is continued, or refused if it holds another configuration.
    nothing_to_continue = not os.path.isfile(os.path.join(out, "checkpoints", "last.pt")) and \
        not os.path.isfile(os.path.join(out, "metrics.json"))
    metrics = train_or_reuse(config, overwrite=nothing_to_continue)
    stamp = os.path.join(out, "study.json")
    if not os.path.isfile(stamp):  # which code trained it: written once, when the cell first finishes
        with open(stamp, "w") as handle:
            json.dump({**environment(), "wall_seconds": round(time.time() - started, 1)}, handle)
    return {"name": name, "map50": metrics.get("map50"), "lambda_cls": metrics.get("lambda_cls")}


def finished(runs: str, name: str) -> bool:
    return os.path.isfile(os.path.join(runs, name, "metrics.json")) and os.path.isfile(os.path.join(runs, name, "study.json"))


def run_grid(cells: List[dict], runs: str, jobs: int) -> set:
    """Trains the unfinished ``cells``; returns the names of those that failed."""
    todo = [c for c in cells if not finished(runs, c["name"])]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} finished, {len(todo)} to train ({jobs} at a time)", flush=True)
    failed = set()
    if not todo:
        return failed
    os.makedirs(runs, exist_ok=True)
    if any(c["values"]["init"] == "pretrained" for c in todo):
        from alwa_det.pretrain import pretrained_backbone

        print(f"backbone: {pretrained_backbone(pretraining(runs), show_progress=True)}", flush=True)
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_quiet_worker,
                                     initargs=(os.path.join(runs, "workers.log"),)) as pool:
        pending = {pool.submit(run_cell, c["name"], c["values"], runs): c for c in todo}
        for done, job in enumerate(futures.as_completed(pending), 1):
            c = pending[job]
            try:
                result = job.result()
                print(f"[{done}/{len(todo)}] {c['name']}: map50 {result['map50']:.3f}, λcls {result['lambda_cls']:.3f}",
                      flush=True)
            except Exception as error:  # one failed cell is reported, the others still run
                failed.add(c["name"])
                print(f"[{done}/{len(todo)}] {c['name']}: FAILED {type(error).__name__}: {error}", flush=True)
    return failed


def _load_self():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_study_now", os.path.abspath(__file__))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, in order (default all: {', '.join(PARTS)})")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each on one thread)")
    parser.add_argument("--runs", default=os.path.join(REPO, "runs", "study"), help="the run folders")
    parser.add_argument("--results", default=HERE, help="where results.csv, results.md and the figures go")
    parser.add_argument("--report-only", action="store_true", help="only tabulate and plot what finished")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for part in parts:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    sys.path.insert(0, HERE)
    import study_report

    def report() -> None:
        # In a child process: the report's code may change while a long study runs.
        subprocess.run([sys.executable, os.path.join(HERE, "study_report.py"), "--runs", args.runs, "--results",
                        args.results], check=False)

    if not args.report_only:
        # Stage by stage, so table7 can pick its cell from the main grid's results. The stages are read
        # again from this file before each one: a long study can be reordered without stopping it.
        failed: set = set()  # cells that failed in this invocation are not tried again in it
        while True:
            stages = _load_self().STAGES
            rows = study_report.collect(args.runs, grid(PARTS, []),
                                        study_report.recorded_rows(os.path.join(args.results, "results.csv")))

            def left(part, losses, weightings):
                return [c for c in grid([part], rows, losses, weightings)
                        if not finished(args.runs, c["name"]) and c["name"] not in failed]

            todo = [stage for stage in stages if stage[0] in parts and left(*stage)]
            if not todo:
                break
            part, losses, weightings = todo[0]
            print(f"stage {part} {losses or 'all losses'} {weightings or 'all weightings'}", flush=True)
            failed |= run_grid(left(*todo[0]), args.runs, args.jobs)
            report()
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
