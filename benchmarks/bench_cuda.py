"""The CUDA configuration of benchmarks.bench_losses, with its targets and the docs table.

CIoU and GIoU at N = 256 ... 2^22 float32 boxes, forward and forward+backward (``full``), every
provider (fused, eager, compiled, torchvision where importable), timed by benchmarks.common
(CUDA events, warm-up, interleaved providers, medians with 20th/80th percentiles, peak memory).
On top: the device-to-device copy bandwidth, the fused op's achieved bandwidth as a fraction of
it, the targets checked, and a markdown table. The cases the targets name run first; once the
time budget is spent, the rest run without torch.compile (its compiles are the slow part).

    python -m benchmarks.bench_cuda [--out-dir benchmarks/results] [--budget-s 330]

Rows are appended to <out-dir>/bench_losses.jsonl (the one results format; the fused rows carry
bytes, bandwidth_gbps and fraction_of_copy, every row copy_bandwidth_gbps); the table is written
to <out-dir>/cuda-<gpu>-<date>.md, which says of each target whether it is met.
"""
from __future__ import annotations

import datetime
import os
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from benchmarks import bench_losses, plot
from benchmarks.common import RESULTS, gpu_slug, summary_ms, time_interleaved

# The targets, float32 CIoU forward+backward: {N: (x eager, x compiled, fraction of copy bandwidth)}.
TARGETS = {1 << 20: (20.0, 1.5, 0.60), 4096: (10.0, 2.0, None)}
KINDS = ("ciou", "giou")


def copy_bandwidth_gbps(nbytes: int = 1 << 30) -> float:
    """Bytes read + written per second by a device-to-device copy."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = time_interleaved({"copy": lambda: dst.copy_(src)}, repeats=20, warmup=3, device=torch.device("cuda"))["copy"]
    del src, dst
    return 2 * nbytes / (summary_ms(seconds)["median_ms"] * 1e-3) / 1e9


def fused_bytes(n: int, mode: str) -> int:
    """Bytes the fused op must move at the least (float32): read pred and target; with the
    backward also write the gradient of pred once. (Its backward's scaling by grad_output reads
    and writes it once more; that pass is counted in the time, not in the bytes.)"""
    box = 16 * n
    return 2 * box + (box if mode == "full" else 0)


def bandwidth_fields(row, copy_bw):
    """What a fused row adds: the bytes it must move, the bandwidth it reaches, the fraction of
    the copy bandwidth that is."""
    if row["provider"] != "fused":
        return {}
    moved = fused_bytes(row["n"], row["mode"])
    bandwidth = moved / (row["median_ms"] * 1e-3) / 1e9
    return {"bytes": moved, "bandwidth_gbps": bandwidth, "fraction_of_copy": bandwidth / copy_bw}


def find(rows, kind, n, provider, mode):
    for r in rows:
        if (r["kind"], r["n"], r["provider"], r["mode"]) == (kind, n, provider, mode):
            return r
    return None


def check_targets(rows):
    out = []
    for n, (x_eager, x_compiled, bandwidth) in TARGETS.items():
        fused = find(rows, "ciou", n, "fused", "full")
        if fused is None:
            continue
        for provider, want in (("eager", x_eager), ("compiled", x_compiled)):
            other = find(rows, "ciou", n, provider, "full")
            got = None if other is None else other["median_ms"] / fused["median_ms"]
            out.append(dict(n=n, what=f"speed-up vs {provider}", target=want, measured=got, met=None if got is None else got >= want))
        if bandwidth is not None:
            got = fused["fraction_of_copy"]
            out.append(dict(n=n, what="fraction of copy bandwidth", target=bandwidth, measured=got, met=got >= bandwidth))
    return out


def markdown(rows, targets) -> str:
    r = rows[0]
    lines = [
        f"CUDA, {r['device_name']}, torch {r['torch']} (CUDA {r['cuda']}), {r['date'][:10]}, commit {r['commit']}; "
        f"{r['dtype']}, reduction mean; device-to-device copy {r['copy_bandwidth_gbps']:.0f} GB/s.",
        plot.markdown(rows),
        "",
        "Fused bandwidth and peak memory of one call (fused / eager):",
        "",
        "| kind | N | mode | fused bandwidth (of copy) | peak MiB fused / eager |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for row in sorted((x for x in rows if x["provider"] == "fused"), key=lambda x: (x["kind"], x["n"], x["mode"])):
        eager = find(rows, row["kind"], row["n"], "eager", row["mode"])
        memory = "-" if eager is None or row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.1f} / {eager['peak_mem_mb']:.1f}"
        lines.append(f"| {row['kind']} | {row['n']} | {row['mode']} | {row['bandwidth_gbps']:.0f} GB/s "
                     f"({row['fraction_of_copy'] * 100:.0f}%) | {memory} |")
    lines += ["", "Targets (CIoU forward+backward):"]
    for t in targets:
        measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f}"
        verdict = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"- N={t['n']}: {t['what']} >= {t['target']}: {measured} ({verdict})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = bench_losses.parser(__doc__.split("\n\n")[0], kinds=list(KINDS), modes=["forward", "full"], device="cuda",
                            repeats=25, compile_budget_s=330.0, out=None)
    p.add_argument("--out-dir", default=RESULTS, help="where bench_losses.jsonl and the markdown table go")
    p.add_argument("--budget-s", dest="compile_budget_s", type=float, help="alias of --compile-budget-s")
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA device, nothing to measure")
        return 0
    args = bench_losses.parse_args(argv, p)
    args.out = args.out or os.path.join(args.out_dir, "bench_losses.jsonl")
    torch.manual_seed(0)
    copy_bw = copy_bandwidth_gbps()
    print(f"{torch.cuda.get_device_name(0)}: device-to-device copy {copy_bw:.0f} GB/s", flush=True)
    args.extra_env = {"copy_bandwidth_gbps": copy_bw}
    # The cases the targets name first, so a spent budget leaves them measured with torch.compile.
    cases = sorted(((k, n) for k in args.kinds for n in args.sizes), key=lambda c: (c[1] not in TARGETS, c[0] != "ciou"))
    rows = bench_losses.run(args, cases, add_fields=lambda row: bandwidth_fields(row, copy_bw))
    targets = check_targets(rows)
    table = markdown(rows, targets)
    path = os.path.join(args.out_dir, f"cuda-{gpu_slug(rows[0]['device_name'])}-{datetime.date.today().isoformat()}.md")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(table)
    print(table)
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
