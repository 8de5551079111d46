"""CUDA benchmark of the fused box losses against eager PyTorch, torch.compile and torchvision.

For CIoU and GIoU at N = 256 ... 2^22 float32 boxes: median forward and forward+backward time
of each provider (CUDA events, warm-up, providers interleaved round by round, medians with the
20th and 80th percentiles), peak memory of a forward+backward, and the fused op's achieved
bandwidth against a measured device-to-device copy. Writes
<out-dir>/cuda-<gpu>-<date>.json and a markdown table (.md) beside it, and checks issue 3's
targets. Self-contained (the CPU benchmarks live in bench_losses.py).

    python benchmarks/bench_cuda.py [--out-dir benchmarks/results] [--budget-s 300]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time

import torch

SIZES = (256, 4096, 65536, 1 << 20, 1 << 22)
KINDS = ("ciou", "giou")
# Issue 3's targets, float32 CIoU forward+backward: {N: (x eager, x compile, fraction of copy bandwidth)}.
TARGETS = {1 << 20: (20.0, 1.5, 0.60), 4096: (10.0, 2.0, None)}
MODES = ("forward", "forward_backward")


def gpu_slug(name: str) -> str:
    match = re.search(r"\b([A-Z]\d{2,4}[A-Z]?)\b", name.upper())
    slug = match.group(1) if match else name
    return re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")


def make_boxes(n: int, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    xy = torch.rand(n, 2, device="cuda", generator=g) * 512
    wh = torch.rand(n, 2, device="cuda", generator=g) * 128 + 4
    pred = torch.cat((xy, xy + wh), -1)
    target = pred + torch.randn(n, 4, device="cuda", generator=g) * 8
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 1)
    return pred.contiguous(), target.contiguous()


def providers(kind: str, compile_ok: bool):
    """name -> fn(pred, target) returning a scalar loss (reduction mean)."""
    import alwa_ext  # here, so that gpu_proof.sh can use gpu_slug before the build
    from alwa_ext import reference

    out = {
        "fused": lambda p, t: alwa_ext.box_loss(p, t, kind, reduction="mean"),
        "eager": lambda p, t: reference.box_loss(p, t, kind, reduction="mean"),
    }
    if compile_ok:
        eager = lambda p, t: reference.box_loss(p, t, kind, reduction="mean")  # noqa: E731
        out["compile"] = torch.compile(eager, dynamic=False)
    try:
        from torchvision.ops import complete_box_iou_loss, generalized_box_iou_loss

        tv = complete_box_iou_loss if kind == "ciou" else generalized_box_iou_loss
        out["torchvision"] = lambda p, t: tv(p, t, reduction="mean")
    except Exception:  # noqa: BLE001 - torchvision missing or too old
        pass
    return out


def step_fn(fn, mode, pred, target):
    if mode == "forward":
        def run():
            with torch.no_grad():
                return fn(pred, target)
    else:
        p = pred.detach().clone().requires_grad_(True)

        def run():
            loss = fn(p, target)
            return torch.autograd.grad(loss, p)
    return run


def percentile(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def time_interleaved(runs: dict, reps: int, warmup: int):
    """runs: name -> callable. Each round times every callable once, in a rotating order."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    torch.cuda.synchronize()
    names = list(runs)
    times = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        events = []
        for name in order:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            runs[name]()
            end.record()
            events.append((name, start, end))
        torch.cuda.synchronize()
        for name, start, end in events:
            times[name].append(start.elapsed_time(end))
    return {
        name: dict(median_ms=statistics.median(t), p20_ms=percentile(t, 0.2), p80_ms=percentile(t, 0.8), reps=len(t))
        for name, t in times.items()
    }


def peak_memory_mb(run) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth_gbps(nbytes: int = 1 << 30) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    res = time_interleaved({"copy": lambda: dst.copy_(src)}, reps=20, warmup=3)["copy"]
    del src, dst
    return 2 * nbytes / (res["median_ms"] * 1e-3) / 1e9  # bytes read + written


def fused_bytes(n: int, mode: str) -> int:
    """Bytes the fused op must move at the least (float32): read pred and target; with the
    backward also write the gradient of pred once. (Its backward's scaling by grad_output reads
    and writes it once more; that pass is counted in the time, not in the bytes.)"""
    box = 16 * n
    return 2 * box + (box if mode == "forward_backward" else 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="after this many seconds, skip torch.compile (its compiles are the slow part)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA device, nothing to measure")
        return 0

    import alwa_ext

    started = time.monotonic()
    torch.manual_seed(0)
    # One static compile per (kind, N, grad mode): more than dynamo's default cache holds.
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)
    props = torch.cuda.get_device_properties(0)
    device_name = torch.cuda.get_device_name(0)
    try:
        import torchvision
        tv_version = torchvision.__version__
    except Exception:  # noqa: BLE001
        tv_version = None
    copy_bw = copy_bandwidth_gbps()
    print(f"{device_name}: device-to-device copy {copy_bw:.0f} GB/s", flush=True)

    # The cases the targets name first, so a budget cut leaves them measured.
    cases = [(k, n) for k in args.kinds for n in args.sizes]
    cases.sort(key=lambda c: (c[1] not in TARGETS, c[0] != "ciou"))
    results = []
    for kind, n in cases:
        compile_ok = time.monotonic() - started < args.budget_s
        pred, target = make_boxes(n)
        fns = providers(kind, compile_ok)
        compile_s = {}
        runs = {}
        for name, fn in fns.items():
            for mode in MODES:
                run = step_fn(fn, mode, pred, target)
                t0 = time.monotonic()
                run()  # first call: compiles where it compiles
                torch.cuda.synchronize()
                if name == "compile":
                    compile_s[mode] = time.monotonic() - t0
                runs[(name, mode)] = run
        timed = time_interleaved({f"{p}/{m}": r for (p, m), r in runs.items()}, args.reps, args.warmup)
        for (name, mode), run in runs.items():
            row = dict(kind=kind, n=n, dtype="float32", provider=name, mode=mode, **timed[f"{name}/{mode}"])
            if mode == "forward_backward":
                row["peak_memory_mb"] = peak_memory_mb(run)
            if name == "compile":
                row["compile_s"] = compile_s[mode]
            if name == "fused":
                row["bytes"] = fused_bytes(n, mode)
                row["bandwidth_gbps"] = row["bytes"] / (row["median_ms"] * 1e-3) / 1e9
                row["fraction_of_copy"] = row["bandwidth_gbps"] / copy_bw
            results.append(row)
        line = "  ".join(
            f"{p}/{m[:3]} {timed[f'{p}/{m}']['median_ms'] * 1e3:.0f}us" for (p, m) in runs
        )
        print(f"{kind} N={n}: {line}", flush=True)
        del pred, target, runs, fns
        torch.cuda.empty_cache()

    results.sort(key=lambda r: (r["kind"], r["n"], r["mode"], r["provider"]))
    targets = check_targets(results)
    date = datetime.date.today().isoformat()
    report = dict(
        device=device_name,
        multiprocessors=props.multi_processor_count,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        torchvision=tv_version,
        alwa_ext=alwa_ext.__version__,
        date=date,
        copy_bandwidth_gbps=copy_bw,
        method=("CUDA events around each call; warm-up calls first; providers interleaved in a rotating "
                "order each round; median with 20th/80th percentiles over the rounds; forward under "
                "no_grad, forward_backward = loss then torch.autograd.grad w.r.t. pred; reduction mean; "
                "compile = torch.compile(reference.box_loss, dynamic=False), default mode"),
        results=results,
        targets=targets,
        seconds=time.monotonic() - started,
    )
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"cuda-{gpu_slug(device_name)}-{date}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(stem + ".md", "w") as f:
        f.write(table)
    print(table)
    print(f"wrote {stem}.json and .md in {report['seconds']:.0f} s")
    return 0


def _row(results, kind, n, provider, mode):
    for r in results:
        if (r["kind"], r["n"], r["provider"], r["mode"]) == (kind, n, provider, mode):
            return r
    return None


def check_targets(results):
    out = []
    for n, (x_eager, x_compile, bw) in TARGETS.items():
        fused = _row(results, "ciou", n, "fused", "forward_backward")
        if fused is None:
            continue
        for provider, want in (("eager", x_eager), ("compile", x_compile)):
            other = _row(results, "ciou", n, provider, "forward_backward")
            if other is None:
                out.append(dict(n=n, what=f"speed-up vs {provider}", target=want, measured=None, met=None))
                continue
            got = other["median_ms"] / fused["median_ms"]
            out.append(dict(n=n, what=f"speed-up vs {provider}", target=want, measured=got, met=got >= want))
        if bw is not None:
            got = fused["fraction_of_copy"]
            out.append(dict(n=n, what="fraction of copy bandwidth", target=bw, measured=got, met=got >= bw))
    return out


def markdown(report) -> str:
    lines = [
        f"CUDA, {report['device']}, torch {report['torch']} (CUDA {report['cuda']}), {report['date']}; "
        f"float32, reduction mean; median µs (20th-80th percentile); copy {report['copy_bandwidth_gbps']:.0f} GB/s.",
        "",
        "| loss | N | pass | fused | eager | torch.compile | torchvision | fused vs eager | fused vs compile | fused bandwidth (of copy) | peak MiB fused / eager |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    res = report["results"]
    keys = sorted({(r["kind"], r["n"], r["mode"]) for r in res}, key=lambda k: (k[0], k[1], k[2]))

    def cell(r):
        return "-" if r is None else f"{r['median_ms'] * 1e3:.0f} ({r['p20_ms'] * 1e3:.0f}-{r['p80_ms'] * 1e3:.0f})"

    for kind, n, mode in keys:
        get = {p: _row(res, kind, n, p, mode) for p in ("fused", "eager", "compile", "torchvision")}
        fused = get["fused"]
        ratio = lambda p: "-" if get[p] is None else f"{get[p]['median_ms'] / fused['median_ms']:.1f}x"  # noqa: E731
        bw = f"{fused['bandwidth_gbps']:.0f} GB/s ({fused['fraction_of_copy'] * 100:.0f}%)"
        mem = "-"
        if mode == "forward_backward" and get["eager"] is not None:
            mem = f"{fused['peak_memory_mb']:.1f} / {get['eager']['peak_memory_mb']:.1f}"
        lines.append(
            f"| {kind} | {n} | {'fwd+bwd' if mode == 'forward_backward' else 'fwd'} | {cell(fused)} | {cell(get['eager'])} | "
            f"{cell(get['compile'])} | {cell(get['torchvision'])} | {ratio('eager')} | {ratio('compile')} | {bw} | {mem} |"
        )
    lines.append("")
    lines.append("Targets (issue 3, CIoU forward+backward):")
    for t in report["targets"]:
        measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f}"
        verdict = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"- N={t['n']}: {t['what']} >= {t['target']}: {measured} ({verdict})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
