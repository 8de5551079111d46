"""Cost per iteration of ALWA: the fused on-device module against the published style
(tests.helpers.reference.PublishedStyleALWA: Python lists, .item() every iteration, NumPy
statistics every C).

Two workloads:
  weighting  only the weighting of two 0-dim losses (what ALWA itself costs);
  train_step a small detection-head training step (conv head, BCE + smooth-L1, backward,
             SGD), where the published style's .item() also stalls the device pipeline.
Each timed call is a block of iterations run back to back (a whole window for the weighting),
so that on CUDA the published style's per-iteration sync shows; the providers take turns block
by block (benchmarks.common.time_interleaved) and the rows give ms per iteration.

    python -m benchmarks.bench_alwa [--device cpu|cuda] [--blocks N]

Rows are appended to benchmarks/results/bench_alwa.jsonl.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import alwa_ext
from tests.helpers.reference import PublishedStyleALWA
from benchmarks.common import RESULTS, describe, environment, finish_run, summary_ms, time_interleaved

RESULTS_FILE = os.path.join(RESULTS, "bench_alwa.jsonl")
PROVIDERS = ("fused", "fused_compiled", "published")
INTERVAL = 100


def make_weighter(provider, device):
    if provider == "published":
        return PublishedStyleALWA(mode="alwa2", interval=INTERVAL)
    alwa = alwa_ext.ALWA(mode="alwa2", interval=INTERVAL).to(device)
    if provider == "fused":
        return alwa
    if provider == "fused_compiled":
        return torch.compile(alwa, fullgraph=True)
    raise ValueError(provider)


def weighting_step(provider, device):
    weighter = make_weighter(provider, device)
    losses = [(torch.rand((), device=device) + 1, torch.rand((), device=device)) for _ in range(64)]
    counter = iter(range(1 << 62))

    def step():
        loss_cls, loss_reg = losses[next(counter) % 64]
        weighter(loss_cls, loss_reg)

    return step


# A RetinaNet-like head on one FPN level: (channels, batch, size). The CPU gets a smaller
# one so that the run takes seconds, not minutes.
TRAIN_SHAPES = {"cuda": (256, 8, 64), "cpu": (64, 2, 32)}


def train_step(provider, device, anchors=9):
    torch.manual_seed(0)
    channels, batch, size = TRAIN_SHAPES[device.type]
    head = torch.nn.Sequential(
        torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(channels, anchors * 5, 3, padding=1)
    ).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=1e-3)
    weighter = make_weighter(provider, device)
    features = torch.randn(batch, channels, size, size, device=device)
    labels = (torch.rand(batch, anchors, size, size, device=device) > 0.9).float()
    targets = torch.randn(batch, anchors * 4, size, size, device=device)

    def step():
        out = head(features)
        loss_cls = torch.nn.functional.binary_cross_entropy_with_logits(out[:, :anchors], labels)
        loss_reg = torch.nn.functional.smooth_l1_loss(out[:, anchors:], targets, beta=1 / 9)
        weighted_cls, weighted_reg = weighter(loss_cls, loss_reg)
        optimizer.zero_grad(set_to_none=True)
        (weighted_cls + weighted_reg).backward()
        optimizer.step()

    return step


def block(step, iterations):
    def run():
        for _ in range(iterations):
            step()

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--blocks", type=int, default=41, help="timed blocks (of 100 iterations) per provider, weighting")
    parser.add_argument("--train-blocks", type=int, default=21, help="timed blocks per provider, train_step")
    parser.add_argument("--train-block", type=int, default=None, help="iterations per block of train_step (default 10 on CUDA, 2 on CPU)")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    parser.add_argument("--no-train-step", action="store_true")
    parser.add_argument("--out", default=RESULTS_FILE)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    env = environment(device)
    print(describe(env), flush=True)
    channels, batch, size = TRAIN_SHAPES[device.type]
    workloads = [("weighting", "0-dim losses", weighting_step, INTERVAL, args.blocks)]
    if not args.no_train_step:
        train_block = args.train_block or (10 if device.type == "cuda" else 2)
        shape = f"conv head {channels}->45 ch, input {batch}x{channels}x{size}x{size}"
        workloads.append(("train_step", shape, train_step, train_block, args.train_blocks))
    rows = []
    for workload, shape, make_step, iterations, blocks in workloads:
        calls = {provider: block(make_step(provider, device), iterations) for provider in args.providers}
        times = time_interleaved(calls, repeats=blocks, warmup=2, device=device)
        for provider, seconds in times.items():
            row = dict(env, bench="alwa", workload=workload, shape=shape, provider=provider, interval=INTERVAL,
                       iterations_per_call=iterations, repeats=blocks, **summary_ms([s / iterations for s in seconds]))
            rows.append(row)
            print(f"{workload:>10} {provider:>15}: {row['median_ms'] * 1e3:10.2f} us/iter "
                  f"[{row['p20_ms'] * 1e3:.2f}-{row['p80_ms'] * 1e3:.2f}]", flush=True)
    finish_run(rows, None if args.no_save else args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
