"""Speed of the sigmoid focal loss over a classification head, one provider per implementation.

Providers, each forward + backward of the mean loss over avg_factor = number of positives:

* ``fused``: alwa_ext.sigmoid_focal_loss on class indices (one pass, gradient with the loss);
* ``eager``: the formula as torchvision's ``sigmoid_focal_loss`` and mmdet's
  ``py_sigmoid_focal_loss`` write it (sigmoid, BCE with logits, p_t, alpha_t, power), on the
  one-hot targets those functions take; the one-hot tensor is built in the timed call, as
  mmdet's FocalLoss builds it from class indices;
* ``compiled``: torch.compile of that eager function (compile time excluded);
* ``torchvision``: torchvision.ops.sigmoid_focal_loss itself, where importable (its targets
  one-hot, built in the call likewise).

Head sizes: ``voc`` = 2 images x 49,104 anchors (a 512-pixel RetinaNet, levels 3-7, 9
anchors) x 20 classes; ``coco`` = 2 x 120,000 x 80. 2% of the anchors are positives.

    python -m benchmarks.bench_focal                    # both heads, float32, this machine's threads
    python -m benchmarks.bench_focal --heads coco --threads 2 --repeats 15

Timing and results follow benchmarks.common (providers taking turns call by call, medians,
ratios within one run); rows are appended to benchmarks/results/bench_focal.jsonl.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

import alwa_ext
from benchmarks.common import RESULTS, describe, environment, finish_run, keep_compiled_graphs, summary_ms, time_interleaved

HEADS = {"voc": (2, 49104, 20), "coco": (2, 120000, 80)}
PROVIDERS = ("fused", "eager", "compiled", "torchvision")
RESULTS_FILE = os.path.join(RESULTS, "bench_focal.jsonl")


def eager_focal_loss(logits, labels, *, alpha: float = 0.25, gamma: float = 2.0, weight=None, avg_factor=None):
    """torchvision's / mmdet's eager formula on one-hot targets made from class indices; the
    mean over ``avg_factor`` (mmdet's weight_reduce_loss). alwa_ext.sigmoid_focal_loss's
    signature, so bench_train_step can put it in the harness's place."""
    num_classes = logits.shape[-1]
    targets = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if weight is not None:
        loss = loss * weight.unsqueeze(-1)
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


def torchvision_focal_loss() -> Callable:
    try:
        from torchvision.ops import sigmoid_focal_loss
    except ImportError:
        return None

    def loss(logits, labels, avg_factor):
        num_classes = logits.shape[-1]
        targets = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(logits.dtype)
        return sigmoid_focal_loss(logits, targets, reduction="sum") / (avg_factor + torch.finfo(torch.float32).eps)

    return loss


def head_inputs(images: int, anchors: int, classes: int, dtype, device, positive_fraction: float = 0.02):
    g = torch.Generator().manual_seed(0)
    # Logits of a trained head: most anchors confidently background.
    logits = (torch.randn(images, anchors, classes, generator=g) - 4).to(dtype=dtype, device=device)
    positive = torch.rand(images, anchors, generator=g) < positive_fraction
    labels = torch.where(positive, torch.randint(0, classes, (images, anchors), generator=g), torch.tensor(classes))
    num_positive = positive.sum().to(torch.float64).clamp(min=1).to(device)
    return logits.requires_grad_(), labels.to(device), num_positive


def make_providers(names) -> Dict[str, Callable]:
    out = {}
    if "fused" in names:
        out["fused"] = lambda x, labels, n: alwa_ext.sigmoid_focal_loss(x, labels, avg_factor=n)
    eager = lambda x, labels, n: eager_focal_loss(x, labels, avg_factor=n)  # noqa: E731
    if "eager" in names:
        out["eager"] = eager
    if "compiled" in names:
        out["compiled"] = torch.compile(eager, dynamic=False)
    if "torchvision" in names:
        tv = torchvision_focal_loss()
        if tv is not None:
            out["torchvision"] = tv
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--dtype", choices=["float32", "float64", "float16", "bfloat16"], default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=RESULTS_FILE)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_compiled_graphs()
    device = torch.device(args.device)
    env = environment(device)
    print(describe(env), flush=True)
    providers = make_providers(args.providers)
    rows = []
    for head in args.heads:
        images, anchors, classes = HEADS[head]
        logits, labels, num_positive = head_inputs(images, anchors, classes, getattr(torch, args.dtype), device)

        def call(fn):
            logits.grad = None
            fn(logits, labels, num_positive).backward()

        calls = {name: (lambda fn=fn: call(fn)) for name, fn in providers.items()}
        times = time_interleaved(calls, repeats=args.repeats, warmup=args.warmup, device=device)
        medians = {name: summary_ms(t)["median_ms"] for name, t in times.items()}
        for name, seconds in times.items():
            rows.append(dict(env, bench="focal", head=head, images=images, anchors=anchors, classes=classes,
                             dtype=args.dtype, provider=name, mode="full", repeats=args.repeats, **summary_ms(seconds)))
        fused = medians.get("fused")
        line = "  ".join(f"{name} {ms:8.1f} ms" + (f" (fused x{ms / fused:.1f})" if fused and name != "fused" else "")
                         for name, ms in medians.items())
        print(f"{head:5s} {images}x{anchors}x{classes}: {line}", flush=True)
        del logits
    finish_run(rows, None if args.no_save else args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
