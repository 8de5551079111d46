"""Plots λcls after each update of ALWA_2 on stationary losses, for update="paper" and
update="stable" (docs/alwa_trajectories.png).

The losses are i.i.d.: cls ~ N(2, 0.4²), reg ~ N(0.5, 0.1²), so the ratio of the true
standard deviations is r/c = 0.25, and sqrt(r/c) = 0.5 is the centre of the paper rule's
2-cycles. It runs the real module (alwa_ext.ALWA) on the CPU.

    python docs/plot_alwa_trajectories.py [--out docs/alwa_trajectories.png]
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import alwa_ext  # noqa: E402

INTERVAL = 400
WINDOWS = 80


def trajectory(update, cls, reg):
    alwa = alwa_ext.ALWA(mode="alwa2", interval=INTERVAL, update=update)
    after = []
    for loss_cls, loss_reg in zip(cls, reg):
        alwa(torch.tensor(loss_cls, dtype=torch.float64), torch.tensor(loss_reg, dtype=torch.float64))
        if alwa.step.item() % INTERVAL == 0:
            after.append(alwa.weights[0].item())
    return np.array(after)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "alwa_trajectories.png"))
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    n = INTERVAL * WINDOWS
    cls = np.abs(2.0 + 0.4 * rng.standard_normal(n))
    reg = np.abs(0.5 + 0.1 * rng.standard_normal(n))

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
    windows = np.arange(1, WINDOWS + 1)
    ax.plot(windows, trajectory("paper", cls, reg), "o-", ms=3, lw=1, label='update="paper" (published rule)')
    ax.plot(windows, trajectory("stable", cls, reg), "s-", ms=3, lw=1, label='update="stable"')
    ax.axhline(0.25, color="k", ls="--", lw=0.8, label="r/c = 0.25")
    ax.axhline(0.5, color="gray", ls=":", lw=0.8, label="sqrt(r/c) = 0.5")
    ax.set_xlabel(f"update (window of C = {INTERVAL} iterations)")
    ax.set_ylabel("λcls after the update")
    ax.set_ylim(0, 1.05)
    ax.set_title("ALWA_2 on stationary losses: std(cls) = 0.4, std(reg) = 0.1")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
