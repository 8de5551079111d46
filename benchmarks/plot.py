"""Charts and markdown tables from the benchmarks' results (JSON lines, benchmarks.common).

    python -m benchmarks.plot                 # the latest loss run: PNGs next to the results file
    python -m benchmarks.plot --run RUN_ID --markdown
    python -m benchmarks.plot --results benchmarks/results/bench_train_step.jsonl --markdown
    python -m benchmarks.plot --results benchmarks/results/bench_alwa.jsonl --markdown

Loss runs (bench_losses, bench_cuda): for each mode `losses_<device>_<mode>_time.png` (median
time vs N per kind and provider, log-log, the 20-80 percentile band shaded) and
`losses_<device>_<mode>_speedup.png` (fused's speed-up over each other provider vs N), and one
markdown table per mode. Other runs (bench_train_step, bench_alwa): a markdown table per
workload and provider. Ratios use medians of the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS, read_rows

COLOURS = {"fused": "tab:red", "eager": "tab:blue", "compiled": "tab:green", "torchvision": "tab:purple", "native": "tab:gray"}


def index(rows):
    """{(mode, kind): {provider: {n: row}}}"""
    out = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[(r["mode"], r["kind"])][r["provider"]][r["n"]] = r
    return out


def title(rows):
    r = rows[0]
    what = f", {r['dtype']}" if "dtype" in r else ""
    return (f"{r.get('device_name')} ({r['device']}, isa {r.get('cpu_isa')}, {r.get('threads')} threads){what}, "
            f"torch {r['torch']}, {r['date'][:10]}")


def _save(fig, ax_or_axes, path, written):
    """Log-log axes over N, then the figure to `path`."""
    for ax in ax_or_axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("boxes N")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    written.append(path)


def plot(rows, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = index(rows)
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    device = rows[0]["device"]
    written = []
    for mode in sorted({m for m, _ in table}):
        fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for provider, by_n in table[(mode, kind)].items():
                ns = sorted(by_n)
                ax.plot(ns, [by_n[n]["median_ms"] for n in ns], "o-", ms=3, label=provider, color=COLOURS.get(provider))
                ax.fill_between(ns, [by_n[n]["p20_ms"] for n in ns], [by_n[n]["p80_ms"] for n in ns], alpha=0.2, color=COLOURS.get(provider))
            ax.set_title(kind)
        axes[0][0].set_ylabel(f"{mode}: median ms")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(title(rows), fontsize=9)
        _save(fig, axes[0], os.path.join(out_dir, f"losses_{device}_{mode}_time.png"), written)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        styles = {"eager": "-", "compiled": "--", "torchvision": ":"}
        for i, kind in enumerate(kinds):
            providers = table[(mode, kind)]
            for other, style in styles.items():
                if other not in providers or "fused" not in providers:
                    continue
                ns = sorted(set(providers["fused"]) & set(providers[other]))
                ax.plot(ns, [providers[other][n]["median_ms"] / providers["fused"][n]["median_ms"] for n in ns], style,
                        marker="o", ms=3, color=f"C{i}", label=f"{kind} vs {other}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_ylabel(f"fused speed-up ({mode})")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(title(rows), fontsize=8)
        _save(fig, [ax], os.path.join(out_dir, f"losses_{device}_{mode}_speedup.png"), written)
        plt.close(fig)
    return written


def cell(row):
    """'median [p20-p80]' in ms; rows converted from older formats may carry a mean only."""
    if row is None:
        return "-"
    if row.get("median_ms") is None:
        return f"{row['mean_ms']:.3g} (mean)"
    return f"{row['median_ms']:.3g} [{row['p20_ms']:.3g}-{row['p80_ms']:.3g}]"


def markdown(rows, sizes=None):
    """One table per mode: median ms per provider and fused's speed-ups, per kind and N."""
    table = index(rows)
    lines = []
    for mode in sorted({m for m, _ in table}):
        providers = [p for p in COLOURS if any(p in table[k] for k in table if k[0] == mode)]
        others = [p for p in providers if p != "fused"]
        lines.append(f"\n**{mode}** (median ms, p20-p80 in brackets; speed-up = other / fused)\n")
        header = ["kind", "N"] + providers + [f"vs {o}" for o in others]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for (m, kind), by_provider in table.items():
            if m != mode:
                continue
            for n in sorted(by_provider.get("fused", {})):
                if sizes and n not in sizes:
                    continue
                cells = [cell(by_provider.get(p, {}).get(n)) for p in providers]
                fused = by_provider["fused"][n]["median_ms"]
                ratios = [f"{by_provider[o][n]['median_ms'] / fused:.1f}x" if n in by_provider.get(o, {}) else "-" for o in others]
                lines.append("| " + " | ".join([kind, str(n)] + cells + ratios) + " |")
    return "\n".join(lines)


def workload_markdown(rows):
    """bench_train_step and bench_alwa: ms per call (per iteration for ALWA) of each provider."""
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    by_workload = defaultdict(dict)
    for r in rows:
        by_workload[(r["workload"], r.get("shape") or r.get("kind"))][r["provider"]] = r
    lines = ["| workload | | " + " | ".join(providers) + " |", "|" + "---|" * (2 + len(providers))]
    for (workload, what), by_provider in by_workload.items():
        lines.append(f"| {workload} | {what} | " + " | ".join(cell(by_provider.get(p)) for p in providers) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(RESULTS, "bench_losses.jsonl"))
    p.add_argument("--run", help="run_id (default: the last run in the file)")
    p.add_argument("--out-dir", default=RESULTS)
    p.add_argument("--markdown", action="store_true", help="print the run's tables in markdown")
    p.add_argument("--sizes", nargs="+", type=int, help="only these N in the markdown tables")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    rows = read_rows(args.results, args.run)
    losses = rows[0].get("bench") == "losses"
    print(f"run {rows[0]['run_id']}: {title(rows)}; load average {rows[0].get('load_avg_start')} -> {rows[0].get('load_avg_end')}")
    if losses and not args.no_plot:
        for path in plot(rows, args.out_dir):
            print("wrote", os.path.relpath(path))
    if args.markdown:
        print(markdown(rows, args.sizes) if losses else workload_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
