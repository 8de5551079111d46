"""``alwa-train train``: train one detector (with no options, the demo's ALWA run)."""
from __future__ import annotations

import argparse
import json

from ..checkpoint import resumed_values
from ..config import TrainConfig
from .options import add_training_options, config_from, explicit_training_values

HELP = "train one detector"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_options(parser, with_weighting=True)
    parser.add_argument("--out", default=argparse.SUPPRESS, help="run folder (default runs/demo)")
    parser.add_argument("--resume", default=None, help="run folder (or its checkpoints/last.pt) to continue; the run stays in it")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in a non-empty --out folder")


def run(args: argparse.Namespace) -> int:
    from ..train import train

    explicit = explicit_training_values(args)
    if args.resume:
        config = TrainConfig.from_dict(resumed_values(args.resume, explicit, TrainConfig, args.overwrite))
    else:
        config = config_from(explicit)
    metrics = train(config, resume=args.resume, overwrite=args.overwrite)
    if metrics:
        shown = {k: metrics[k] for k in ("map50", "map50_11pt", "map", "train_seconds", "eval_seconds") if k in metrics}
        print(json.dumps(shown))
    return 0
