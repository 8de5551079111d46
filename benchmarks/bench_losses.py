"""Speed of the box-regression losses, one provider per implementation, side by side.

Providers: ``fused`` (alwa_ext.box_loss: one pass, gradient computed with the loss),
``eager`` (alwa_ext.reference.box_loss: plain PyTorch, autograd), ``compiled``
(torch.compile of that eager reference, compiled once per shape; compile time excluded) and
``torchvision`` (torchvision.ops' GIoU/DIoU/CIoU losses, where importable).

Modes: ``forward`` (the training forward: inputs require grad), ``backward`` (backward alone,
after an untimed forward) and ``full`` (forward + backward). Every measurement warms up first,
then the providers take turns call by call (so a drifting machine affects them alike); each
row reports the median and the 20th/80th percentiles, and on CUDA the peak memory of one call.
Ratios are computed within one run.

    python -m benchmarks.bench_losses                       # default grid, CPU (~10 min, 2 cores)
    python -m benchmarks.bench_losses --kinds ciou --sizes 1048576 --modes full forward backward
    python -m benchmarks.bench_losses --device cuda --dtype float16
    python -m benchmarks.plot                              # charts of the latest run

Rows are appended to benchmarks/results/bench_losses.jsonl with the device, CPU ISA, threads,
torch version, commit, date and load average.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import alwa_ext
from alwa_ext import reference
from benchmarks.common import RESULTS, Timer, append_rows, environment, interleaved, load_average, summary_ms

KINDS = ("iou", "giou", "diou", "ciou", "l1", "smooth_l1")
DEFAULT_KINDS = ("ciou", "giou", "diou", "l1", "smooth_l1")
DEFAULT_SIZES = (256, 4096, 65536, 1 << 20, 1 << 22)
MODES = ("forward", "backward", "full")
PROVIDERS = ("fused", "eager", "compiled", "torchvision")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
RESULTS_FILE = os.path.join(RESULTS, "bench_losses.jsonl")


def make_boxes(n: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """Predictions near their targets (like matched anchors after some training): xyxy, positive sizes."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 512
    wh = torch.rand(n, 2, generator=g) * 128 + 4
    target = torch.cat([xy, xy + wh], 1)
    pred = target + torch.randn(n, 4, generator=g) * 0.15 * wh.repeat(1, 2)
    return pred.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype)


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
    return out


def one_call(timer: Timer, fn: Callable, mode: str, pred: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds for one call of `fn` in `mode`; pred (a leaf requiring grad) has its grad cleared."""
    pred.grad = None
    if mode == "forward":
        return timer(lambda: fn(pred, target))
    if mode == "backward":
        state = {}
        return timer(lambda: state["loss"].backward(), before=lambda: state.update(loss=fn(pred, target)))
    return timer(lambda: fn(pred, target).backward())


def peak_memory_mb(fn: Callable, mode: str, pred: torch.Tensor, target: torch.Tensor) -> Optional[float]:
    """CUDA memory allocated at the peak of one call, above what was allocated before it."""
    if pred.device.type != "cuda":
        return None
    pred.grad = None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    loss = fn(pred, target)
    if mode != "forward":
        loss.backward()
    torch.cuda.synchronize()
    del loss
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def default_repeats(n: int) -> int:
    """Enough calls for stable medians while the default grid stays within ~10 min on 2 cores."""
    return max(5, min(100, (1 << 24) // n))


def run(args) -> List[Dict[str, object]]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa:
        alwa_ext.cpu.set_isa(args.isa)
    # Every (kind, N, grad mode) is its own static graph; keep them all compiled.
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 1024))
    dtype = DTYPES[args.dtype]
    env = environment(device)
    timer = Timer(device)
    rows = []
    print(f"# {env['device_name']} | {env['device']} | isa {env['cpu_isa']} | {env['threads']} threads | "
          f"torch {env['torch']} | commit {env['commit']} | load {env['load_avg_start']}", flush=True)
    for kind in args.kinds:
        providers = make_providers(kind, args.providers)
        for n in args.sizes:
            base_pred, target = make_boxes(n, dtype, device)
            repeats = args.repeats or default_repeats(n)
            for mode in args.modes:
                preds = {name: base_pred.clone().requires_grad_() for name in providers}
                calls = {name: (lambda name=name: one_call(timer, providers[name], mode, preds[name], target)) for name in providers}
                for _ in range(args.warmup):
                    for call in calls.values():
                        call()
                times = interleaved(calls, repeats)
                result = {}
                for name, seconds in times.items():
                    row = dict(env, bench="losses", kind=kind, n=n, dtype=args.dtype, mode=mode, provider=name,
                               repeats=repeats, warmup=args.warmup, **summary_ms(seconds),
                               peak_mem_mb=peak_memory_mb(providers[name], mode, preds[name], target))
                    result[name] = row["median_ms"]
                    rows.append(row)
                line = "  ".join(f"{name} {ms:9.3f}" for name, ms in result.items())
                ratios = "  ".join(f"x{result[other] / result['fused']:.1f} vs {other}" for other in result if other != "fused" and "fused" in result)
                print(f"{kind:9s} n={n:<8d} {mode:8s} ms: {line}   {ratios}", flush=True)
    load_end = load_average()
    for row in rows:
        row["load_avg_end"] = load_end
    print(f"# load average at the end: {load_end}", flush=True)
    if not args.no_save:
        append_rows(args.out, rows)
        print(f"# {len(rows)} rows appended to {os.path.relpath(args.out)}")
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(DEFAULT_KINDS))
    p.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), help="numbers of boxes N")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["full"])
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--repeats", type=int, default=0, help="timed calls per provider (default: by N, 100 down to 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per provider first (torch.compile compiles here)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--isa", choices=["scalar", "avx2", "avx512"], help="force alwa_ext's CPU path (default: the widest)")
    p.add_argument("--out", default=RESULTS_FILE, help="JSON-lines file the rows are appended to")
    p.add_argument("--no-save", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    return args


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
