"""``alwa-train compare``: train a grid of losses x weightings x seeds and tabulate mAP in the
paper's Table 2 layout (table.md, table.csv); a cell whose folder holds its finished run is reused."""
from __future__ import annotations

import argparse
import csv
import math
import os
from typing import Dict, List, Sequence

from alwa_ext.kinds import LOSS_KINDS

from ..titles import LOSS_TITLES, WEIGHTING_TITLES
from ..weighting import WEIGHTINGS
from .options import add_training_options, choice_list, config_from, explicit_training_values, positive_int

HELP = "train a grid of losses x weightings x seeds and tabulate mAP"
METRICS = ("map50", "map50_11pt", "map")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_options(parser, with_weighting=False)
    parser.add_argument("--losses", type=choice_list(LOSS_KINDS), default=["l1", "smooth_l1", "ciou"])
    parser.add_argument("--weightings", type=choice_list(WEIGHTINGS), default=list(WEIGHTINGS))
    parser.add_argument("--seeds", type=positive_int, default=3, help="number of seeds per cell")
    parser.add_argument("--metric", choices=METRICS, default="map50")
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--overwrite", action="store_true", help="train again the cells whose folders hold other runs")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import coco_evaluator_installed
    from ..train import train_or_reuse

    if not getattr(args, "evaluate", True):
        raise ValueError("compare tabulates evaluation results; --no-eval leaves nothing to compare")
    if args.metric == "map" and not coco_evaluator_installed():
        raise ValueError("--metric map needs pycocotools or faster-coco-eval: pip install 'alwa_ext[coco]'")
    base = explicit_training_values(args)
    base_seed = base.pop("seed", 0)
    detector = base.get("detector", "retinanet")
    results: Dict[tuple, List[float]] = {}
    for loss in args.losses:
        for weighting in args.weightings:
            for offset in range(args.seeds):
                out = os.path.join(args.out, f"{detector}-{loss}-{weighting}-seed{base_seed + offset}")
                config = config_from({**base, "loss": loss, "weighting": weighting, "seed": base_seed + offset, "out": out})
                metrics = train_or_reuse(config, args.overwrite)
                if args.metric not in metrics:
                    raise ValueError(f"metric {args.metric!r} is not in {out}/metrics.json")
                results.setdefault((loss, weighting), []).append(float(metrics[args.metric]))
    write_comparison(results, args.losses, args.weightings, detector, args.metric, args.out)
    with open(os.path.join(args.out, "table.md")) as handle:
        print(handle.read())
    return 0


def write_comparison(results: Dict[tuple, List[float]], losses: Sequence[str], weightings: Sequence[str], detector: str,
                     metric: str, out: str) -> None:
    """table.md (the paper's Table 2 layout: a row per loss, a column per weighting, mean ± std and
    the change against fixed weights) and table.csv (one row per cell), values in percent."""
    os.makedirs(out, exist_ok=True)

    def stats(values: List[float]):
        array = [100 * v for v in values]
        mean = sum(array) / len(array)
        std = math.sqrt(sum((v - mean) ** 2 for v in array) / (len(array) - 1)) if len(array) > 1 else 0.0
        return mean, std

    rows = []
    header = ["Loss"] + [WEIGHTING_TITLES[w] for w in weightings]
    lines = [f"{detector}: {metric} (%) over seeds, mean ± std; change against fixed weights in brackets", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for loss in losses:
        fixed_mean = stats(results[(loss, "fixed")])[0] if (loss, "fixed") in results else None
        cells = [LOSS_TITLES[loss]]
        for weighting in weightings:
            values = results[(loss, weighting)]
            mean, std = stats(values)
            delta = None if fixed_mean is None or weighting == "fixed" else mean - fixed_mean
            cells.append(f"{mean:.1f} ± {std:.1f}" + ("" if delta is None else f" ({delta:+.1f})"))
            rows.append({"detector": detector, "loss": loss, "weighting": weighting, "metric": metric,
                         "mean": round(mean, 3), "std": round(std, 3),
                         "change_vs_fixed": "" if delta is None else round(delta, 3), "seeds": len(values),
                         "values": " ".join(f"{100 * v:.3f}" for v in values)})
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(out, "table.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "table.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
