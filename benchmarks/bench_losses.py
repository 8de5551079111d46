"""Speed of the box-regression losses, one provider per implementation, side by side.

Providers: ``fused`` (alwa_ext.box_loss: one pass, gradient computed with the loss),
``eager`` (tests.helpers.reference.box_loss: plain PyTorch, autograd), ``compiled``
(torch.compile of that eager reference, compiled once per shape; compile time excluded) and
``torchvision`` (torchvision.ops' GIoU/DIoU/CIoU losses, where importable) and ``native``
(torch's own ``F.l1_loss`` for l1, ``F.smooth_l1_loss`` for every other kind: the cheapest loss
torch has on the same tensors, the yardstick of a call's fixed cost).

Modes: ``forward`` (the training forward: inputs require grad), ``backward`` (backward alone,
after an untimed forward) and ``full`` (forward + backward). Timing and results follow
benchmarks.common: warm-up, providers taking turns call by call, median and 20th/80th
percentiles, CUDA events and the peak memory of one call on CUDA; ratios within one run.

    python -m benchmarks.bench_losses                       # default grid, CPU (~10 min, 2 cores)
    python -m benchmarks.bench_losses --kinds ciou --sizes 1048576 --modes full forward backward
    python -m benchmarks.bench_losses --small              # per-call cost: N = 256, 1024, 4096, 1 thread
    python -m benchmarks.bench_losses --device cuda --dtype float16
    python -m benchmarks.bench_cuda                         # the CUDA grid, targets and docs table
    python -m benchmarks.plot --markdown                    # charts and tables of the latest run

Rows are appended to benchmarks/results/bench_losses.jsonl.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import alwa_ext
from tests.helpers import reference
from alwa_ext.kinds import LOSS_KINDS
from benchmarks.common import (
    RESULTS,
    describe,
    environment,
    finish_run,
    keep_compiled_graphs,
    make_boxes,
    peak_memory_mb,
    summary_ms,
    time_interleaved,
)

DEFAULT_KINDS = ("ciou", "giou", "diou", "l1", "smooth_l1")
DEFAULT_SIZES = (256, 4096, 65536, 1 << 20, 1 << 22)
MODES = ("forward", "backward", "full")
PROVIDERS = ("fused", "eager", "compiled", "torchvision", "native")
# The per-call-cost table (--small): the sizes detectors compute box losses at (positives).
SMALL_KINDS = ("smooth_l1", "l1", "ciou", "giou")
SMALL_SIZES = (256, 1024, 4096)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
RESULTS_FILE = os.path.join(RESULTS, "bench_losses.jsonl")


def torchvision_loss(kind: str) -> Optional[Callable]:
    try:
        from torchvision import ops
    except ImportError:
        return None
    fn = {
        "giou": getattr(ops, "generalized_box_iou_loss", None),
        "diou": getattr(ops, "distance_box_iou_loss", None),
        "ciou": getattr(ops, "complete_box_iou_loss", None),
    }.get(kind)
    if fn is None:
        return None
    return lambda pred, target: fn(pred, target, reduction="mean", eps=1e-7)


def make_providers(kind: str, names: List[str]) -> Dict[str, Callable]:
    """Loss functions (pred, target) -> 0-dim mean loss, for the providers that have this kind."""
    out = {}
    for name in names:
        if name == "fused":
            out[name] = lambda p, t: alwa_ext.box_loss(p, t, kind)
        elif name == "eager":
            out[name] = lambda p, t: reference.box_loss(p, t, kind)
        elif name == "compiled":
            # Static shapes: one graph per (kind, N, dtype, grad mode), compiled in the warm-up.
            compiled = torch.compile(reference.box_loss, dynamic=False)
            out[name] = lambda p, t, compiled=compiled: compiled(p, t, kind)
        elif name == "torchvision":
            fn = torchvision_loss(kind)
            if fn is not None:
                out[name] = fn
        elif name == "native":
            native = torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.smooth_l1_loss
            out[name] = lambda p, t, native=native: native(p, t)
    return out


def mode_calls(fn: Callable, mode: str, pred: torch.Tensor, target: torch.Tensor):
    """(prepare, call) of one timed call of `fn` in `mode`; pred is a leaf requiring grad."""
    def forward():
        pred.grad = None
        return fn(pred, target)

    if mode == "forward":
        return None, forward
    if mode == "backward":
        return forward, lambda loss: loss.backward()
    return None, lambda: forward().backward()


def default_repeats(n: int) -> int:
    """Enough calls for stable medians while the default grid stays within ~10 min on 2 cores."""
    return max(5, min(100, (1 << 24) // n))


def measure_case(kind: str, n: int, providers: Dict[str, Callable], args, env, add_fields=None) -> List[Dict[str, object]]:
    """The rows of one (kind, N): every mode, every provider, interleaved."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    base_pred, target = make_boxes(n, dtype, device)
    repeats = args.repeats or default_repeats(n)
    rows = []
    for mode in args.modes:
        preds = {name: base_pred.clone().requires_grad_() for name in providers}
        prepare, calls = {}, {}
        for name, fn in providers.items():
            before, call = mode_calls(fn, mode, preds[name], target)
            calls[name] = call
            if before is not None:
                prepare[name] = before
        times = time_interleaved(calls, repeats=repeats, warmup=args.warmup, device=device, prepare=prepare)
        medians = {}
        for name, seconds in times.items():
            _, full = mode_calls(providers[name], "forward" if mode == "forward" else "full", preds[name], target)
            row = dict(env, bench="losses", kind=kind, n=n, dtype=args.dtype, mode=mode, provider=name,
                       repeats=repeats, warmup=args.warmup, **summary_ms(seconds),
                       peak_mem_mb=peak_memory_mb(full, device))
            if add_fields is not None:
                row.update(add_fields(row))
            medians[name] = row["median_ms"]
            rows.append(row)
        line = "  ".join(f"{name} {ms:9.3f}" for name, ms in medians.items())
        ratios = "  ".join(f"x{medians[o] / medians['fused']:.1f} vs {o}" for o in medians if o != "fused" and "fused" in medians)
        print(f"{kind:9s} n={n:<8d} {mode:8s} ms: {line}   {ratios}", flush=True)
    return rows


def run(args, cases=None, add_fields=None) -> List[Dict[str, object]]:
    """Measures `cases` ((kind, N) pairs; default: every kind x size of args) and saves the rows.
    Once args.compile_budget_s seconds have passed, later cases leave out ``compiled``.
    ``add_fields(row)``, where given, returns fields to add to each row before it is saved."""
    started = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa:
        alwa_ext.cpu.set_isa(args.isa)
    keep_compiled_graphs()
    env = dict(environment(args.device), **(args.extra_env or {}))
    print(describe(env), flush=True)
    rows = []
    for kind, n in cases or [(k, n) for k in args.kinds for n in args.sizes]:
        names = list(args.providers)
        if args.compile_budget_s is not None and time.monotonic() - started > args.compile_budget_s and "compiled" in names:
            names.remove("compiled")
            print(f"# compile budget of {args.compile_budget_s:.0f} s spent: {kind} n={n} without torch.compile", flush=True)
        rows += measure_case(kind, n, make_providers(kind, names), args, env, add_fields)
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
    finish_run(rows, None if args.no_save else args.out)
    return rows


def parser(description=None, **defaults) -> argparse.ArgumentParser:
    """The options of this benchmark; bench_cuda reuses them with its own defaults."""
    p = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=LOSS_KINDS, default=list(DEFAULT_KINDS))
    p.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), help="numbers of boxes N")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["full"])
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--repeats", type=int, default=0, help="timed calls per provider (default: by N, 100 down to 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per provider first (torch.compile compiles here)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--isa", choices=["scalar", "avx2", "avx512"], help="force alwa_ext's CPU path (default: the widest)")
    p.add_argument("--compile-budget-s", type=float, default=None,
                   help="after this many seconds, measure the remaining cases without torch.compile")
    p.add_argument("--out", default=RESULTS_FILE, help="JSON-lines file the rows are appended to")
    p.add_argument("--no-save", action="store_true", help="print only")
    p.add_argument("--small", action="store_true",
                   help=f"the per-call-cost table: kinds {' '.join(SMALL_KINDS)}, N = {SMALL_SIZES}, one thread, "
                        "forward+backward (overrides --kinds, --sizes, --threads)")
    p.set_defaults(extra_env=None, **defaults)
    return p


def parse_args(argv=None, p=None):
    p = p or parser()
    args = p.parse_args(argv)
    if args.small:
        args.kinds, args.sizes, args.threads = list(SMALL_KINDS), list(SMALL_SIZES), 1
        args.repeats = args.repeats or 400
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    return args


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
