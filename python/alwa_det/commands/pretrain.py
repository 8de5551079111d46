"""``alwa-train pretrain``: pretrain the small backbone on another task (shape classification),
for ``alwa-train train --backbone-weights``; resumable like a detector's run."""
from __future__ import annotations

import argparse
import json
import os

from .options import non_negative_int, number, positive_int

HELP = "pretrain the small backbone on another task (shape classification) for --backbone-weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = lambda *names, **kw: parser.add_argument(*names, default=argparse.SUPPRESS, **kw)  # noqa: E731
    add("--out", help="run folder (default runs/pretrain); the backbone is its backbone.pt")
    add("--width", type=positive_int, help="channels of the small backbone's first stage (the detector's --width)")
    add("--image-size", dest="image_size", type=positive_int)
    add("--train-images", dest="train_images", type=positive_int)
    add("--eval-images", dest="eval_images", type=positive_int)
    add("--iterations", type=positive_int)
    add("--batch-size", dest="batch_size", type=positive_int)
    add("--lr", type=number(minimum_exclusive=0))
    add("--seed", type=non_negative_int)
    add("--threads", type=non_negative_int, help="CPU threads for torch (0: torch's default)")
    add("--log-interval", dest="log_interval", type=positive_int)
    add("--checkpoint-interval", dest="checkpoint_interval", type=positive_int)
    parser.add_argument("--resume", default=None, help="pretraining folder to continue; the run stays in it")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in a non-empty --out folder")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import resumed_values
    from ..pretrain import PretrainConfig, make_pretrain_config, pretrain

    explicit = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite")}
    if args.resume:
        values = resumed_values(args.resume, explicit, PretrainConfig, args.overwrite)
        if "iterations" in explicit:
            values.pop("lr_steps")  # a run made longer keeps its drops at 75% and 90% of its length
        config = make_pretrain_config(values)
    else:
        config = make_pretrain_config(explicit)
    metrics = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({k: metrics[k] for k in ("label_accuracy", "image_accuracy", "train_seconds")}))
    print(f"backbone: {os.path.join(config.out, metrics['backbone'])} (alwa-train train --backbone-weights PATH)")
    return 0
