"""``alwa-train eval``: evaluate a checkpoint, on its own evaluation data or on another dataset's."""
from __future__ import annotations

import argparse
import json

from ..config import DATASETS

HELP = "evaluate a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder, checkpoint file or model_final.pt")
    parser.add_argument("--dataset", choices=DATASETS, default=None)
    parser.add_argument("--data-root", dest="data_root", default=None)
    parser.add_argument("--eval-split", dest="eval_split", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="folder for eval_metrics.json")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, args.eval_split, args.device, args.out)
    print(json.dumps({k: v for k, v in metrics.items()}, indent=2))
    return 0
