"""Charts and a markdown table from benchmarks/results/bench_losses.jsonl.

    python -m benchmarks.plot                 # the latest run: PNGs next to the results file
    python -m benchmarks.plot --run RUN_ID --markdown

For each mode of the run: `losses_<device>_<mode>_time.png` (median time vs N per kind and
provider, log-log, the 20-80 percentile band shaded) and `losses_<device>_<mode>_speedup.png`
(fused's speed-up over each other provider vs N). Ratios use medians of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS

COLOURS = {"fused": "tab:red", "eager": "tab:blue", "compiled": "tab:green", "torchvision": "tab:purple"}


def load(path, run_id=None):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no rows")
    run_id = run_id or rows[-1]["run_id"]
    rows = [r for r in rows if r["run_id"] == run_id]
    if not rows:
        raise SystemExit(f"{path}: no run {run_id}")
    return run_id, rows


def index(rows):
    """{(mode, kind): {provider: {n: row}}}"""
    out = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[(r["mode"], r["kind"])][r["provider"]][r["n"]] = r
    return out


def title(rows):
    r = rows[0]
    return (f"{r['device_name']} ({r['device']}, isa {r['cpu_isa']}, {r['threads']} threads), {r['dtype']}, "
            f"torch {r['torch']}, {r['date'][:10]}")


def plot(rows, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = index(rows)
    modes = sorted({m for m, _ in table})
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    device = rows[0]["device"]
    written = []
    for mode in modes:
        fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for provider, by_n in table[(mode, kind)].items():
                ns = sorted(by_n)
                ax.plot(ns, [by_n[n]["median_ms"] for n in ns], "o-", ms=3, label=provider, color=COLOURS.get(provider))
                ax.fill_between(ns, [by_n[n]["p20_ms"] for n in ns], [by_n[n]["p80_ms"] for n in ns], alpha=0.2, color=COLOURS.get(provider))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(kind)
            ax.set_xlabel("boxes N")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(f"{mode}: median ms")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(title(rows), fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, f"losses_{device}_{mode}_time.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        styles = {"eager": "-", "compiled": "--", "torchvision": ":"}
        for i, kind in enumerate(kinds):
            providers = table[(mode, kind)]
            if "fused" not in providers:
                continue
            for other, style in styles.items():
                if other not in providers:
                    continue
                ns = sorted(set(providers["fused"]) & set(providers[other]))
                ax.plot(ns, [providers[other][n]["median_ms"] / providers["fused"][n]["median_ms"] for n in ns], style,
                        marker="o", ms=3, color=f"C{i}", label=f"{kind} vs {other}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("boxes N")
        ax.set_ylabel(f"fused speed-up ({mode})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(title(rows), fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"losses_{device}_{mode}_speedup.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def markdown(rows, sizes=None):
    """One table per mode: median ms per provider and fused's speed-ups, per kind and N."""
    table = index(rows)
    lines = []
    for mode in sorted({m for m, _ in table}):
        providers = [p for p in COLOURS if any(p in table[k] for k in table if k[0] == mode)]
        others = [p for p in providers if p != "fused"]
        lines.append(f"\n**{mode}** (median ms, p20-p80 in brackets; speed-up = other / fused)\n")
        lines.append("| kind | N | " + " | ".join(providers) + " | " + " | ".join(f"vs {o}" for o in others) + " |")
        lines.append("|" + "---|" * (2 + len(providers) + len(others)))
        for (m, kind), by_provider in table.items():
            if m != mode:
                continue
            for n in sorted(by_provider.get("fused", {})):
                if sizes and n not in sizes:
                    continue
                cells = []
                for p in providers:
                    r = by_provider.get(p, {}).get(n)
                    cells.append(f"{r['median_ms']:.3g} [{r['p20_ms']:.3g}-{r['p80_ms']:.3g}]" if r else "-")
                fused = by_provider["fused"][n]["median_ms"]
                ratios = [f"{by_provider[o][n]['median_ms'] / fused:.1f}x" if n in by_provider.get(o, {}) else "-" for o in others]
                lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
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
    run_id, rows = load(args.results, args.run)
    print(f"run {run_id}: {title(rows)}; load average {rows[0].get('load_avg_start')} -> {rows[0].get('load_avg_end')}")
    if not args.no_plot:
        for path in plot(rows, args.out_dir):
            print("wrote", os.path.relpath(path))
    if args.markdown:
        print(markdown(rows, args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
