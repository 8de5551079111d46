"""Command line: ``alwa-train train | eval | compare | demo | pretrain`` (also ``python -m alwa_det``).

``train`` with no options is the demo's ALWA run (RetinaNet, CIoU, ALWA_2, synthetic data, CPU);
``demo`` trains it beside fixed weights on the same data and prints both. Options the user gives
override the preset of the chosen dataset and detector (see :mod:`alwa_det.config`).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

from alwa_ext.kinds import ALWA_MODES, LOSS_KINDS

from .backbone import BACKBONES
from .config import DATASETS, DETECTORS, PAPER_DEPARTURES, make_config
from .errors import TrainingInterrupted
from .weighting import ALWA_STATISTICS, ALWA_UPDATES, WEIGHTINGS

# What the commands import beyond alwa_ext's own dependencies (torch, numpy), module -> package:
# a plain `pip install alwa_ext` has none of them, `alwa_ext[harness]` brings them. --help needs none.
HARNESS_EXTRAS = {"PIL": "pillow", "tqdm": "tqdm", "matplotlib": "matplotlib"}

METRICS = ("map50", "map50_11pt", "map")
# The paper's names in the table: ALWA's modes are alwa1, alwa2, ... (alwa_ext.kinds.ALWA_MODES).
WEIGHTING_TITLES = {"fixed": "Fixed", **{mode: f"ALWA_{mode[len('alwa'):]}" for mode in ALWA_MODES}}
LOSS_TITLES = {"l1": "L1", "smooth_l1": "SmoothL1", "iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU",
               "eiou": "EIoU", "siou": "SIoU"}


def _integer(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _integer(1, "a positive integer")
_non_negative_int = _integer(0, "a non-negative integer")


def _number(minimum_exclusive: Optional[float] = None, minimum: Optional[float] = None):
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


def _int_list(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _choice_list(allowed: Sequence[str]):
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


def _add_training_options(parser: argparse.ArgumentParser, with_weighting: bool) -> None:
    """Options shared by train and compare; absent ones fall back to the preset (SUPPRESS keeps them out)."""
    add = lambda *names, **kw: parser.add_argument(*names, default=argparse.SUPPRESS, **kw)  # noqa: E731
    add("--detector", choices=DETECTORS, help="detector (default retinanet)")
    if with_weighting:
        add("--loss", choices=LOSS_KINDS, help="box-regression loss (default ciou)")
        add("--weighting", choices=WEIGHTINGS, help="loss weighting (default alwa2)")
    add("--cls-weight", dest="cls_weight", type=_number(minimum_exclusive=0), help="initial λcls")
    add("--reg-weight", dest="reg_weight", type=_number(minimum_exclusive=0), help="λreg")
    add("--interval", type=_positive_int, help="ALWA window in iterations")
    add("--alwa-update", dest="alwa_update", choices=ALWA_UPDATES, help="ALWA rule: paper (default) or stable")
    add("--alwa-statistic", dest="alwa_statistic", choices=ALWA_STATISTICS,
        help="ALWA's spread: raw (the paper's window std, default) or detrended (about the window's trend line)")
    add("--dataset", choices=DATASETS, help="dataset (default synthetic)")
    add("--data-root", dest="data_root", help="VOC year folder or COCO folder")
    add("--train-split", dest="train_split", help="training split name (VOC trainval, COCO train2017)")
    add("--eval-split", dest="eval_split", help="evaluation split name (VOC test, COCO val2017)")
    add("--synthetic-train-images", dest="synthetic_train_images", type=_positive_int)
    add("--synthetic-eval-images", dest="synthetic_eval_images", type=_positive_int)
    add("--iterations", type=_positive_int, help="training iterations")
    add("--epochs", type=_positive_int, help="training epochs (converted to iterations)")
    add("--batch-size", dest="batch_size", type=_positive_int)
    add("--lr", type=_number(minimum_exclusive=0))
    add("--momentum", type=_number(minimum=0))
    add("--weight-decay", dest="weight_decay", type=_number(minimum=0))
    add("--warmup-iterations", dest="warmup_iterations", type=_non_negative_int)
    add("--lr-steps", dest="lr_steps", type=_int_list, help="iterations of the tenfold lr drops, e.g. 750,900")
    add("--clip-grad", dest="clip_grad", type=_number(minimum=0), help="max gradient norm (0: off)")
    add("--image-size", dest="image_size", type=_positive_int, help="longer image side after resizing")
    add("--backbone", choices=BACKBONES)
    add("--backbone-weights", dest="backbone_weights", metavar="PATH",
        help="start the backbone from these weights (alwa-train pretrain's backbone.pt, or a state dict); "
             "FPN and heads start fresh")
    add("--width", type=_positive_int, help="channels of the small backbone's first stage")
    add("--fpn-channels", dest="fpn_channels", type=_positive_int)
    add("--head-convs", dest="head_convs", type=_non_negative_int)
    add("--min-level", dest="min_level", type=_positive_int)
    add("--max-level", dest="max_level", type=_positive_int)
    add("--anchor-scale", dest="anchor_scale", type=_number(minimum_exclusive=0), help="anchor size in strides")
    add("--workers", type=_non_negative_int, help="data loader worker processes")
    add("--seed", type=_non_negative_int)
    add("--device", help="cpu, cuda or cuda:N")
    add("--amp", action="store_true", help="mixed precision (CUDA only)")
    add("--log-interval", dest="log_interval", type=_positive_int)
    add("--checkpoint-interval", dest="checkpoint_interval", type=_positive_int)
    add("--no-eval", dest="evaluate", action="store_false", help="skip the final evaluation")
    add("--threads", type=_non_negative_int, help="CPU threads for torch (0: torch's default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alwa-train", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one detector")
    _add_training_options(train, with_weighting=True)
    train.add_argument("--out", default=argparse.SUPPRESS, help="run folder (default runs/demo)")
    train.add_argument("--resume", default=None, help="run folder (or its checkpoints/last.pt) to continue; the run stays in it")
    train.add_argument("--overwrite", action="store_true", help="replace the run in a non-empty --out folder")

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="run folder, checkpoint file or model_final.pt")
    evaluate.add_argument("--dataset", choices=DATASETS, default=None)
    evaluate.add_argument("--data-root", dest="data_root", default=None)
    evaluate.add_argument("--eval-split", dest="eval_split", default=None)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--out", default=None, help="folder for eval_metrics.json")

    compare = commands.add_parser("compare", help="train a grid of losses x weightings x seeds and tabulate mAP")
    _add_training_options(compare, with_weighting=False)
    compare.add_argument("--losses", type=_choice_list(LOSS_KINDS), default=["l1", "smooth_l1", "ciou"])
    compare.add_argument("--weightings", type=_choice_list(WEIGHTINGS), default=list(WEIGHTINGS))
    compare.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds per cell")
    compare.add_argument("--metric", choices=METRICS, default="map50")
    compare.add_argument("--out", default="runs/compare")
    compare.add_argument("--overwrite", action="store_true", help="train again the cells whose folders hold other runs")

    demo = commands.add_parser("demo", help="train fixed weights and ALWA side by side on the same data, print both")
    _add_training_options(demo, with_weighting=False)
    demo.add_argument("--loss", choices=LOSS_KINDS, default=argparse.SUPPRESS, help="box-regression loss (default ciou)")
    demo.add_argument("--weightings", type=_choice_list(WEIGHTINGS), default=["fixed", "alwa2"],
                      help="the runs, side by side (default fixed,alwa2)")
    demo.add_argument("--out", default="runs/demo", help="folder of the runs, one subfolder per weighting")
    demo.add_argument("--overwrite", action="store_true", help="train again the runs whose folders hold other runs")

    pretrain = commands.add_parser("pretrain", help="pretrain the small backbone on another task (shape classification) "
                                                    "for --backbone-weights")
    add = lambda *names, **kw: pretrain.add_argument(*names, default=argparse.SUPPRESS, **kw)  # noqa: E731
    add("--out", help="run folder (default runs/pretrain); the backbone is its backbone.pt")
    add("--width", type=_positive_int, help="channels of the small backbone's first stage (the detector's --width)")
    add("--image-size", dest="image_size", type=_positive_int)
    add("--train-images", dest="train_images", type=_positive_int)
    add("--eval-images", dest="eval_images", type=_positive_int)
    add("--iterations", type=_positive_int)
    add("--batch-size", dest="batch_size", type=_positive_int)
    add("--lr", type=_number(minimum_exclusive=0))
    add("--seed", type=_non_negative_int)
    add("--threads", type=_non_negative_int, help="CPU threads for torch (0: torch's default)")
    add("--log-interval", dest="log_interval", type=_positive_int)
    add("--checkpoint-interval", dest="checkpoint_interval", type=_positive_int)
    pretrain.add_argument("--resume", default=None, help="pretraining folder to continue; the run stays in it")
    pretrain.add_argument("--overwrite", action="store_true", help="replace the run in a non-empty --out folder")
    return parser


def run_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import load_pretrain_checkpoint, make_pretrain_config, pretrain

    explicit = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite")}
    if args.resume and args.overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    if args.resume:
        from .run_folder import RunFolder, run_folder_of

        folder = run_folder_of(args.resume)
        saved = dict(load_pretrain_checkpoint(RunFolder(folder).checkpoint)["config"])
        if "iterations" in explicit:
            saved.pop("lr_steps")  # a run made longer keeps its drops at 75% and 90% of its length
        config = make_pretrain_config({**saved, **explicit, "out": folder})
    else:
        config = make_pretrain_config(explicit)
    metrics = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({k: metrics[k] for k in ("label_accuracy", "image_accuracy", "train_seconds")}))
    print(f"backbone: {os.path.join(config.out, metrics['backbone'])} (alwa-train train --backbone-weights PATH)")
    return 0


def _explicit_training_values(args: argparse.Namespace) -> Dict[str, object]:
    values = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite", "epochs",
                                                                 "losses", "weightings", "seeds", "metric")}
    if "epochs" in vars(args):
        if "iterations" in values:
            raise ValueError("give --iterations or --epochs, not both")
        values["epochs"] = args.epochs
    return values


def _config_from(values: Dict[str, object]):
    """A validated TrainConfig; ``epochs`` become iterations once the dataset size is known."""
    epochs = values.pop("epochs", None)
    config = make_config(values)
    if epochs is not None:
        from .data import build_dataset

        dataset = build_dataset(config.dataset, config.train_split, config.image_size, config.data_root, config.seed,
                                config.synthetic_train_images)
        per_epoch = max(1, len(dataset) // config.batch_size)
        config = make_config({**values, "iterations": epochs * per_epoch})
    return config


def _resume_config(resume: str, explicit: Dict[str, object]):
    """The checkpoint's config, in the folder --resume names; only RESUME_CHANGEABLE options may differ."""
    from .config import TrainConfig, resume_conflicts
    from .run_folder import RunFolder, run_folder_of, same_folder
    from .train import load_checkpoint

    folder = run_folder_of(resume)
    if "out" in explicit and not same_folder(explicit["out"], folder):
        raise ValueError(f"--resume continues the run in {folder}; --out {explicit['out']} names another folder "
                         "(copy the run folder to branch a run)")
    saved = load_checkpoint(RunFolder(folder).checkpoint)["config"]
    conflicts = resume_conflicts(saved, explicit)
    if conflicts:
        raise ValueError(f"--resume continues the saved run; these options differ from its config: {', '.join(conflicts)}")
    return TrainConfig.from_dict({**saved, **explicit, "out": folder})


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    explicit = _explicit_training_values(args)
    if args.resume and args.overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    config = _resume_config(args.resume, explicit) if args.resume else _config_from(explicit)
    metrics = train(config, resume=args.resume, overwrite=args.overwrite)
    if metrics:
        shown = {k: metrics[k] for k in ("map50", "map50_11pt", "map", "train_seconds", "eval_seconds") if k in metrics}
        print(json.dumps(shown))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .train import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, args.eval_split, args.device, args.out)
    print(json.dumps({k: v for k, v in metrics.items()}, indent=2))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .evaluate import coco_evaluator_installed

    if not getattr(args, "evaluate", True):
        raise ValueError("compare tabulates evaluation results; --no-eval leaves nothing to compare")
    if args.metric == "map" and not coco_evaluator_installed():
        raise ValueError("--metric map needs pycocotools or faster-coco-eval: pip install 'alwa_ext[coco]'")
    base = _explicit_training_values(args)
    base_seed = base.pop("seed", 0)
    detector = base.get("detector", "retinanet")
    results: Dict[tuple, List[float]] = {}
    for loss in args.losses:
        for weighting in args.weightings:
            for offset in range(args.seeds):
                out = os.path.join(args.out, f"{detector}-{loss}-{weighting}-seed{base_seed + offset}")
                config = _config_from({**base, "loss": loss, "weighting": weighting, "seed": base_seed + offset, "out": out})
                metrics = _run_cell(config, args.overwrite)
                if args.metric not in metrics:
                    raise ValueError(f"metric {args.metric!r} is not in {out}/metrics.json")
                results.setdefault((loss, weighting), []).append(float(metrics[args.metric]))
    write_comparison(results, args.losses, args.weightings, detector, args.metric, args.out)
    with open(os.path.join(args.out, "table.md")) as handle:
        print(handle.read())
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The runs of ``--weightings`` on the same data, seed and schedule (at the same time where the
    machine has the cores, :func:`_run_cells_side_by_side`; a finished run of the same configuration
    is reused), then their metrics side by side and a figure of their losses and λcls."""
    from .plots import plot_comparison

    if not getattr(args, "evaluate", True):
        raise ValueError("demo compares evaluation results; --no-eval leaves nothing to compare")
    base = _explicit_training_values(args)
    out = base.pop("out")
    configs = [_config_from({**base, "weighting": w, "out": os.path.join(out, w)}) for w in args.weightings]
    runs = list(zip(configs, _run_cells_side_by_side(configs, args.overwrite)))
    plot_comparison([(weighting_title(c), os.path.join(c.out, "log.csv")) for c, _ in runs], runs[0][0].interval,
                    os.path.join(out, "comparison.png"))
    text = demo_summary(runs, os.path.join(out, "comparison.png"))
    with open(os.path.join(out, "summary.txt"), "w") as handle:
        handle.write(text)
    print(text, end="")
    return 0


def weighting_title(config) -> str:
    """How a run's weighting reads in a table: 'Fixed 1:1', 'ALWA_2 (paper rule, C = 50)', ..."""
    if config.weighting == "fixed":
        return f"{WEIGHTING_TITLES['fixed']} {config.cls_weight:g}:{config.reg_weight:g}"
    statistic = ", detrended" if config.alwa_statistic == "detrended" else ""
    return f"{WEIGHTING_TITLES[config.weighting]} ({config.alwa_update} rule{statistic}, C = {config.interval})"


def demo_summary(runs, figure: str) -> str:
    """The demo's table: map50, map and the final λcls of each run, what the preset changes from
    the paper, and where the plots are."""
    first = runs[0][0]
    lines = [f"{first.detector} + {LOSS_TITLES[first.loss]} on {first.dataset} data, {first.iterations} iterations, "
             f"seed {first.seed}: one seed; README \"Does ALWA help?\" has the spread over seeds", "",
             f"{'weighting':<36} {'map50':>7} {'map':>7} {'λcls (final)':>13} {'train s':>8}"]
    for config, metrics in runs:
        cells = [f"{100 * metrics[k]:6.1f}%" if isinstance(metrics.get(k), (int, float)) else f"{'-':>7}"
                 for k in ("map50", "map")]
        lines.append(f"{weighting_title(config):<36} {cells[0]:>7} {cells[1]:>7} {metrics['lambda_cls']:13.3f} "
                     f"{metrics.get('train_seconds', float('nan')):8.0f}")
    lines += ["", "Where this preset departs from the paper:"]
    lines += [f"  - {text}" for text in PAPER_DEPARTURES.get(first.dataset, ())]
    lines += ["", "Plots: " + ", ".join(os.path.join(c.out, "losses.png") for c, _ in runs) + f", {figure}"]
    return "\n".join(lines) + "\n"


def _run_cell(config, overwrite: bool) -> Dict[str, object]:
    """A cell's metrics: reused when its folder holds a finished run of the same config, else from a
    run that continues the folder's interrupted one, or a new one (over another config's only with
    ``overwrite``)."""
    from . import train as training
    from .config import resume_conflicts, with_defaults
    from .run_folder import RunFolder

    folder = RunFolder(config.out)
    metrics = training.readable_metrics(folder)
    as_json = lambda values: json.loads(json.dumps(values))  # noqa: E731
    if metrics is not None and isinstance(metrics.get("config"), dict) and \
            as_json(with_defaults(metrics["config"])) == as_json(config.to_dict()):
        return metrics
    if os.path.isfile(folder.checkpoint):
        saved = training.load_checkpoint(folder.checkpoint)
        conflicts = resume_conflicts(saved["config"], config.to_dict())
        if int(saved["iteration"]) > config.iterations:
            conflicts.append("iterations")
        if not conflicts:
            return training.train(config, resume=folder.path)
        if not overwrite:
            raise ValueError(f"{folder.path} holds a run of another configuration (it differs in {', '.join(conflicts)}); "
                             "pass --overwrite to train the cell again, or choose another --out")
    return training.train(config, overwrite=overwrite)


def _run_cells_side_by_side(configs, overwrite: bool) -> List[Dict[str, object]]:
    """The metrics of each config, as :func:`_run_cell` gives them. CPU runs of a set thread count
    whose threads add up to no more than the machine's cores train at the same time, each in a
    process of its own (their results are those of runs one after the other: each run's own seed
    and threads decide it), under one progress bar; other runs train one after the other."""
    fits = len(configs) > 1 and all(c.device == "cpu" and c.threads > 0 for c in configs) and \
        sum(c.threads for c in configs) <= (os.cpu_count() or 1)
    if not fits:
        return [_run_cell(config, overwrite) for config in configs]
    import concurrent.futures as futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(len(configs), mp_context=context, initializer=_hide_progress) as pool:
        jobs = [pool.submit(_run_cell, config, overwrite) for config in configs]
        try:
            _show_progress(configs, jobs)
        except KeyboardInterrupt:  # the workers got the Ctrl-C too: their results say where each stopped
            futures.wait(jobs)
        return [job.result() for job in jobs]


def _hide_progress() -> None:
    from . import train

    train.SHOW_PROGRESS = False


def _show_progress(configs, jobs) -> None:
    """One bar over runs training in other processes, from the iterations their logs have reached."""
    import concurrent.futures as futures

    from tqdm import tqdm

    with tqdm(total=sum(c.iterations for c in configs), desc="train", dynamic_ncols=True, file=sys.stderr) as bar:
        while True:
            finished = not futures.wait(jobs, timeout=1.0).not_done
            reached = [_logged_iteration(c.out) for c in configs]
            bar.n = sum(reached)
            bar.set_postfix_str("  ".join(f"{os.path.basename(c.out)} {n}" for c, n in zip(configs, reached)))
            if finished:
                return


def _logged_iteration(folder: str) -> int:
    """The last iteration a run's log.csv holds (0 while it has none)."""
    from .run_folder import LOG_FILE

    try:
        with open(os.path.join(folder, LOG_FILE), "rb") as handle:
            lines = handle.read().splitlines()
        return int(lines[-1].split(b",", 1)[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
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


def require_extras(command: str) -> None:
    """Raise a one-line error naming what ``command`` needs and the pip install that brings it."""
    missing = []
    for module, package in HARNESS_EXTRAS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ValueError(f"{command} needs {', '.join(missing)}, not installed here: pip install 'alwa_ext[harness]'")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": run_train, "eval": run_eval, "compare": run_compare, "demo": run_demo, "pretrain": run_pretrain}
    try:
        require_extras(args.command)
        return commands[args.command](args)
    except (ValueError, OSError) as error:  # bad configuration, data or files: a message, not a traceback
        print(f"alwa-train {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:  # Ctrl-C while training: stopped between two steps
        print(f"alwa-train {args.command}: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C during setup or evaluation
        print(f"alwa-train {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
