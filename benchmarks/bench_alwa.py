"""Cost per iteration of ALWA: the fused on-device module against a host-side implementation
in the published style (Python lists, .item() every iteration, NumPy statistics every C).

Two workloads:
  weighting  only the weighting of two 0-dim losses (what ALWA itself costs);
  train_step a small detection-head training step (conv head, BCE + smooth-L1, backward,
             SGD), where the published style's .item() also stalls the device pipeline.
Results are appended to benchmarks/results/alwa.csv (device, torch version, date).

    python -m benchmarks.bench_alwa [--device cpu|cuda] [--iters N]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import time

import numpy as np
import torch

import alwa_ext

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "alwa.csv")


class PublishedStyleALWA:
    """ALWA_2 as the published code does it: weights are Python floats, the weighted losses
    are read back with .item() each iteration, the statistics are NumPy's."""

    def __init__(self, interval=100):
        self.interval = interval
        self.cls_weight, self.reg_weight = 1.0, 1.0
        self.cls_history, self.reg_history = [], []

    def __call__(self, loss_cls, loss_reg):
        weighted_cls, weighted_reg = loss_cls * self.cls_weight, loss_reg * self.reg_weight
        self.cls_history.append(weighted_cls.item())
        self.reg_history.append(weighted_reg.item())
        if len(self.cls_history) % self.interval == 0:
            cls, reg = np.std(self.cls_history, ddof=1), np.std(self.reg_history, ddof=1)
            if cls > reg:
                self.cls_weight = 1 - (cls - reg) / cls
            self.cls_history, self.reg_history = [], []
        return weighted_cls, weighted_reg


def make_weighter(provider, interval, device):
    if provider == "published":
        return PublishedStyleALWA(interval)
    alwa = alwa_ext.ALWA(mode="alwa2", interval=interval).to(device)
    if provider == "fused":
        return alwa
    if provider == "fused_compiled":
        return torch.compile(alwa, fullgraph=True)
    raise ValueError(provider)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_iter(step, iters, device, warmup=20):
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iters * 1e6


def bench_weighting(provider, device, iters, interval=100):
    weighter = make_weighter(provider, interval, device)
    losses = [(torch.rand((), device=device) + 1, torch.rand((), device=device)) for _ in range(64)]
    counter = iter(range(1 << 62))

    def step():
        loss_cls, loss_reg = losses[next(counter) % 64]
        weighter(loss_cls, loss_reg)

    return time_per_iter(step, iters, device)


# A RetinaNet-like head on one FPN level: (channels, batch, size). The CPU gets a smaller
# one so that the run takes seconds, not minutes.
TRAIN_SHAPES = {"cuda": (256, 8, 64), "cpu": (64, 2, 32)}


def bench_train_step(provider, device, iters, interval=100, anchors=9):
    torch.manual_seed(0)
    channels, batch, size = TRAIN_SHAPES[device.type]
    head = torch.nn.Sequential(
        torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(channels, anchors * 5, 3, padding=1)
    ).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=1e-3)
    weighter = make_weighter(provider, interval, device)
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

    return time_per_iter(step, iters, device, warmup=5)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=5000, help="iterations of the weighting workload")
    parser.add_argument("--train-iters", type=int, default=None, help="iterations of the train_step workload")
    parser.add_argument("--providers", default="fused,fused_compiled,published")
    parser.add_argument("--no-train-step", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    train_iters = args.train_iters or (200 if device.type == "cuda" else 50)
    rows = []
    date = datetime.datetime.now().isoformat(timespec="seconds")
    for provider in args.providers.split(","):
        workloads = [("weighting", "0-dim losses", lambda: bench_weighting(provider, device, args.iters))]
        if not args.no_train_step:
            channels, batch, size = TRAIN_SHAPES[device.type]
            shape = f"conv head {channels}->45 ch, input {batch}x{channels}x{size}x{size}"
            workloads.append(("train_step", shape, lambda: bench_train_step(provider, device, train_iters)))
        for workload, shape, fn in workloads:
            us = fn()
            rows.append(dict(date=date, device=device_name(device), torch=torch.__version__, alwa_ext=alwa_ext.__version__,
                             workload=workload, shape=shape, provider=provider, interval=100, us_per_iter=round(us, 2)))
            print(f"{workload:>10} {provider:>15}: {us:10.2f} us/iter")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    new_file = not os.path.exists(RESULTS)
    with open(RESULTS, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {RESULTS}")


if __name__ == "__main__":
    main()
