"""What the commands' options mean: argument types with one-line errors, the training options
that train, compare and demo share (an option the user leaves out falls back to the preset), and
the options the user gave as a validated :class:`alwa_det.config.TrainConfig`."""
from __future__ import annotations

import argparse
import math
from typing import Dict, List, Optional, Sequence

from alwa_ext.kinds import ALWA_UPDATES, LOSS_KINDS

from ..backbone import BACKBONES
from ..config import DATASETS, DETECTORS, make_config
from ..weighting import ALWA_STATISTICS, WEIGHTINGS


def integer(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = integer(1, "a positive integer")
non_negative_int = integer(0, "a non-negative integer")


def number(minimum_exclusive: Optional[float] = None, minimum: Optional[float] = None):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum_exclusive is not None and value <= minimum_exclusive:
            raise argparse.ArgumentTypeError(f"expected a number above {minimum_exclusive}, got {text!r}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number of at least {minimum}, got {text!r}")
        return value

    return parse


def int_list(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def choice_list(allowed: Sequence[str]):
    def parse(text: str) -> List[str]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [item for item in items if item not in allowed]
        if not items or unknown:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {', '.join(allowed)}, got {text!r}")
        repeated = sorted({item for item in items if items.count(item) > 1})
        if repeated:  # a repeated loss would fill the table with copies of one cell, as if they were seeds
            raise argparse.ArgumentTypeError(f"{', '.join(repeated)} listed more than once in {text!r}")
        return items

    return parse


def add_training_options(parser: argparse.ArgumentParser, with_weighting: bool) -> None:
    """Options shared by train and compare; absent ones fall back to the preset (SUPPRESS keeps them out)."""
    add = lambda *names, **kw: parser.add_argument(*names, default=argparse.SUPPRESS, **kw)  # noqa: E731
    add("--detector", choices=DETECTORS, help="detector (default retinanet)")
    if with_weighting:
        add("--loss", choices=LOSS_KINDS, help="box-regression loss (default ciou)")
        add("--weighting", choices=WEIGHTINGS, help="loss weighting (default alwa2)")
    add("--cls-weight", dest="cls_weight", type=number(minimum_exclusive=0), help="initial λcls")
    add("--reg-weight", dest="reg_weight", type=number(minimum_exclusive=0), help="λreg")
    add("--interval", type=positive_int, help="ALWA window in iterations")
    add("--alwa-update", dest="alwa_update", choices=ALWA_UPDATES, help="ALWA rule: paper (default) or stable")
    add("--alwa-statistic", dest="alwa_statistic", choices=ALWA_STATISTICS,
        help="ALWA's spread: raw (the paper's window std, default) or detrended (about the window's trend line)")
    add("--dataset", choices=DATASETS, help="dataset (default synthetic)")
    add("--data-root", dest="data_root", help="VOC year folder or COCO folder")
    add("--train-split", dest="train_split", help="training split name (VOC trainval, COCO train2017)")
    add("--eval-split", dest="eval_split", help="evaluation split name (VOC test, COCO val2017)")
    add("--synthetic-train-images", dest="synthetic_train_images", type=positive_int)
    add("--synthetic-eval-images", dest="synthetic_eval_images", type=positive_int)
    add("--iterations", type=positive_int, help="training iterations")
    add("--epochs", type=positive_int, help="training epochs (converted to iterations)")
    add("--batch-size", dest="batch_size", type=positive_int)
    add("--lr", type=number(minimum_exclusive=0))
    add("--momentum", type=number(minimum=0))
    add("--weight-decay", dest="weight_decay", type=number(minimum=0))
    add("--warmup-iterations", dest="warmup_iterations", type=non_negative_int)
    add("--lr-steps", dest="lr_steps", type=int_list, help="iterations of the tenfold lr drops, e.g. 750,900")
    add("--clip-grad", dest="clip_grad", type=number(minimum=0), help="max gradient norm (0: off)")
    add("--image-size", dest="image_size", type=positive_int, help="longer image side after resizing")
    add("--backbone", choices=BACKBONES)
    add("--backbone-weights", dest="backbone_weights", metavar="PATH",
        help="start the backbone from these weights (alwa-train pretrain's backbone.pt, or a state dict); "
             "FPN and heads start fresh")
    add("--width", type=positive_int, help="channels of the small backbone's first stage")
    add("--fpn-channels", dest="fpn_channels", type=positive_int)
    add("--head-convs", dest="head_convs", type=non_negative_int)
    add("--min-level", dest="min_level", type=positive_int)
    add("--max-level", dest="max_level", type=positive_int)
    add("--anchor-scale", dest="anchor_scale", type=number(minimum_exclusive=0), help="anchor size in strides")
    add("--workers", type=non_negative_int, help="data loader worker processes")
    add("--seed", type=non_negative_int)
    add("--device", help="cpu, cuda or cuda:N")
    add("--amp", action="store_true", help="mixed precision (CUDA only)")
    add("--log-interval", dest="log_interval", type=positive_int)
    add("--checkpoint-interval", dest="checkpoint_interval", type=positive_int)
    add("--no-eval", dest="evaluate", action="store_false", help="skip the final evaluation")
    add("--threads", type=non_negative_int, help="CPU threads for torch (0: torch's default)")


def explicit_training_values(args: argparse.Namespace) -> Dict[str, object]:
    """The training options the user gave (those left out are not in ``args``: the preset fills them)."""
    values = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite", "epochs",
                                                                 "losses", "weightings", "seeds", "metric")}
    if "epochs" in vars(args):
        if "iterations" in values:
            raise ValueError("give --iterations or --epochs, not both")
        values["epochs"] = args.epochs
    return values


def config_from(values: Dict[str, object]):
    """A validated TrainConfig; ``epochs`` become iterations once the dataset size is known."""
    epochs = values.pop("epochs", None)
    config = make_config(values)
    if epochs is not None:
        from ..data import build_dataset

        dataset = build_dataset(config.dataset, config.train_split, config.image_size, config.data_root, config.seed,
                                config.synthetic_train_images)
        per_epoch = max(1, len(dataset) // config.batch_size)
        config = make_config({**values, "iterations": epochs * per_epoch})
    return config
