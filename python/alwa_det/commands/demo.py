"""``alwa-train demo``: fixed weights and ALWA trained side by side on the same data, seed and
schedule (a finished run of the same configuration is reused), then their metrics side by side
(summary.txt) and a figure of their losses and λcls (comparison.png)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

from alwa_ext.kinds import LOSS_KINDS

from ..config import PAPER_DEPARTURES
from ..titles import LOSS_TITLES, weighting_title
from ..weighting import WEIGHTINGS
from .options import add_training_options, choice_list, config_from, explicit_training_values

HELP = "train fixed weights and ALWA side by side on the same data, print both"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_options(parser, with_weighting=False)
    parser.add_argument("--loss", choices=LOSS_KINDS, default=argparse.SUPPRESS, help="box-regression loss (default ciou)")
    parser.add_argument("--weightings", type=choice_list(WEIGHTINGS), default=["fixed", "alwa2"],
                        help="the runs, side by side (default fixed,alwa2)")
    parser.add_argument("--out", default="runs/demo", help="folder of the runs, one subfolder per weighting")
    parser.add_argument("--overwrite", action="store_true", help="train again the runs whose folders hold other runs")


def run(args: argparse.Namespace) -> int:
    """The runs of ``--weightings`` on the same data, seed and schedule (at the same time where the
    machine has the cores, :func:`train_side_by_side`; a finished run of the same configuration
    is reused), then their metrics side by side and a figure of their losses and λcls."""
    from ..plots import plot_comparison

    if not getattr(args, "evaluate", True):
        raise ValueError("demo compares evaluation results; --no-eval leaves nothing to compare")
    base = explicit_training_values(args)
    out = base.pop("out")
    configs = [config_from({**base, "weighting": w, "out": os.path.join(out, w)}) for w in args.weightings]
    runs = list(zip(configs, train_side_by_side(configs, args.overwrite)))
    plot_comparison([(weighting_title(c), os.path.join(c.out, "log.csv")) for c, _ in runs], runs[0][0].interval,
                    os.path.join(out, "comparison.png"))
    text = demo_summary(runs, os.path.join(out, "comparison.png"))
    with open(os.path.join(out, "summary.txt"), "w") as handle:
        handle.write(text)
    print(text, end="")
    return 0


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


def train_side_by_side(configs, overwrite: bool) -> List[Dict[str, object]]:
    """The metrics of each config, as :func:`alwa_det.train.train_or_reuse` gives them. CPU runs of
    a set thread count whose threads add up to no more than the machine's cores train at the same
    time, each in a process of its own (their results are those of runs one after the other: each
    run's own seed and threads decide it), under one progress bar; other runs train one after the
    other."""
    fits = len(configs) > 1 and all(c.device == "cpu" and c.threads > 0 for c in configs) and \
        sum(c.threads for c in configs) <= (os.cpu_count() or 1)
    from ..train import train_or_reuse

    if not fits:
        return [train_or_reuse(config, overwrite) for config in configs]
    import concurrent.futures as futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(len(configs), mp_context=context, initializer=_hide_progress) as pool:
        jobs = [pool.submit(train_or_reuse, config, overwrite) for config in configs]
        try:
            _show_progress(configs, jobs)
        except KeyboardInterrupt:  # the workers got the Ctrl-C too: their results say where each stopped
            futures.wait(jobs)
        return [job.result() for job in jobs]


def _hide_progress() -> None:
    from .. import loop

    loop.SHOW_PROGRESS = False


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
    from ..run_folder import LOG_FILE

    try:
        with open(os.path.join(folder, LOG_FILE), "rb") as handle:
            lines = handle.read().splitlines()
        return int(lines[-1].split(b",", 1)[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0
