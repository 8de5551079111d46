"""End-to-end gain: one detector training step with the fused loss stage vs the eager one.

Two workloads, both timed as whole steps (forward, losses, backward), fused and eager taking
turns call by call:

* ``harness`` -- one RetinaNet training step of the project's detector harness (``alwa_det``,
  on its synthetic images). Used when ``alwa_det`` is importable (``--workload harness`` forces
  it, ``--workload standin`` skips it). The eager run swaps ``alwa_ext.box_loss`` for its eager
  twin ``tests.helpers.reference.box_loss`` and ``alwa_ext.sigmoid_focal_loss`` for torchvision's
  eager formula on one-hot targets (benchmarks.bench_focal.eager_focal_loss, what the harness
  computed before the fused focal loss), both of the same signature, so the harness needs no
  switch of its own.
* ``standin`` -- a stand-in for a RetinaNet loss stage, clearly not a detector: head outputs for
  B images x A anchors (leaf tensors: class logits (B, A, C) and box deltas (B, A, 4)), deltas
  decoded onto the anchors (alwa_ext.decode_deltas), the box loss over every anchor with a
  positive-mask weight and ``avg_factor`` = number of positives (the no-sync formulation the
  harness uses), the sigmoid focal loss over all anchors and classes (labels with a background
  class), and backward through both.

    python -m benchmarks.bench_train_step                   # auto: harness if importable, and the stand-in
    python -m benchmarks.bench_train_step --workload standin --anchors 100000 --kind giou

Timing and results follow benchmarks.common; rows go to benchmarks/results/bench_train_step.jsonl.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Callable, Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import alwa_ext
from alwa_ext.kinds import LOSS_KINDS
from benchmarks.bench_focal import eager_focal_loss
from tests.helpers import reference
from benchmarks.common import RESULTS, describe, environment, finish_run, summary_ms, time_interleaved

RESULTS_FILE = os.path.join(RESULTS, "bench_train_step.jsonl")


@contextlib.contextmanager
def loss_backend(name: str):
    """`fused`: alwa_ext's losses as they are; `eager`: alwa_ext.box_loss replaced by the eager
    reference and alwa_ext.sigmoid_focal_loss by the eager torchvision formula."""
    originals = alwa_ext.box_loss, alwa_ext.sigmoid_focal_loss
    if name == "eager":
        alwa_ext.box_loss, alwa_ext.sigmoid_focal_loss = reference.box_loss, eager_focal_loss
    try:
        yield
    finally:
        alwa_ext.box_loss, alwa_ext.sigmoid_focal_loss = originals


# ----------------------------------------------------------------------------- stand-in


def standin_inputs(args):
    """Anchors, targets near them, which anchors are positive, and their count (a tensor)."""
    g = torch.Generator().manual_seed(0)
    b, a = args.images, args.anchors
    xy = torch.rand(a, 2, generator=g) * 800
    anchors = torch.cat([xy, xy + torch.rand(a, 2, generator=g) * 200 + 16], 1).expand(b, a, 4)
    positive = torch.rand(b, a, generator=g) < args.positive_fraction
    # Targets near their anchors; what negatives are matched to does not matter (weight 0).
    target_boxes = alwa_ext.decode_deltas(torch.randn(b, a, 4, generator=g) * 0.2, anchors)
    num_positive = positive.sum().float().clamp(min=1.0)
    deltas = (torch.randn(b, a, 4, generator=g) * 0.2).requires_grad_()
    return g, anchors, positive, target_boxes, num_positive, deltas


def standin_step(args) -> Callable[[], None]:
    g, anchors, positive, target_boxes, num_positive, deltas = standin_inputs(args)
    b, a, c = args.images, args.anchors, args.classes
    # Class indices, the value c being the background (mmdet's convention).
    labels = torch.where(positive, torch.randint(0, c, (b, a), generator=g), torch.full((b, a), c))
    weight = positive.float()
    cls_logits = (torch.randn(b, a, c, generator=g) - 4).requires_grad_()

    def step():
        cls_logits.grad = deltas.grad = None
        pred_boxes = alwa_ext.decode_deltas(deltas, anchors)
        loss_reg = alwa_ext.box_loss(pred_boxes, target_boxes, args.kind, weight=weight, avg_factor=num_positive)
        loss_cls = alwa_ext.sigmoid_focal_loss(cls_logits, labels, avg_factor=num_positive)
        (loss_cls + loss_reg).backward()

    return step


def standin_box_loss_only(args) -> Callable[[], None]:
    """The regression part of the stand-in alone (decode + box loss + backward)."""
    _, anchors, positive, target_boxes, num_positive, deltas = standin_inputs(args)
    weight = positive.float()

    def step():
        deltas.grad = None
        pred_boxes = alwa_ext.decode_deltas(deltas, anchors)
        alwa_ext.box_loss(pred_boxes, target_boxes, args.kind, weight=weight, avg_factor=num_positive).backward()

    return step


# ----------------------------------------------------------------------------- harness


def harness_available() -> bool:
    try:
        import alwa_det  # noqa: F401
    except ImportError:
        return False
    return True


def harness_step(args) -> Callable[[], None]:
    """One RetinaNet training step (forward, losses, backward) of alwa_det on two synthetic
    images, with a --harness-classes head."""
    from alwa_det.config import TrainConfig
    from alwa_det.data import SyntheticShapes, collate
    from alwa_det.models import build_detector

    torch.manual_seed(0)
    config = TrainConfig(detector="retinanet", loss=args.kind, image_size=args.image_size, batch_size=args.images)
    dataset = SyntheticShapes(num_images=args.images, image_size=args.image_size, seed=0)
    # A head of --harness-classes classes (VOC's 20 by default: the synthetic data has fewer,
    # and the focal loss over anchors x classes is what a real head costs).
    num_classes = max(len(dataset.class_names), args.harness_classes)
    model = build_detector(config, num_classes).train()
    batch = collate([dataset[i] for i in range(args.images)])

    def step():
        model.zero_grad(set_to_none=True)
        losses = model(batch.images, batch.gt_boxes, batch.gt_labels, batch.gt_valid)
        sum(losses.values()).backward()

    return step


# ----------------------------------------------------------------------------- driver


def measure(name: str, make_step: Callable, args, env) -> List[Dict[str, object]]:
    steps = {}
    for backend in ("fused", "eager"):
        with loss_backend(backend):
            steps[backend] = make_step(args)

    def call(backend):
        with loss_backend(backend):
            steps[backend]()

    calls = {backend: (lambda backend=backend: call(backend)) for backend in steps}
    times = time_interleaved(calls, repeats=args.repeats, warmup=args.warmup)
    rows = []
    for backend, seconds in times.items():
        rows.append(dict(env, bench="train_step", workload=name, provider=backend, kind=args.kind, images=args.images,
                         anchors=args.anchors if name.startswith("standin") else None,
                         positive_fraction=args.positive_fraction if name.startswith("standin") else None,
                         image_size=args.image_size if name == "harness" else None,
                         classes=args.harness_classes if name == "harness" else args.classes,
                         repeats=args.repeats, **summary_ms(seconds)))
    fused, eager = rows[0]["median_ms"], rows[1]["median_ms"]
    print(f"{name:22s} {args.kind:5s} step ms: fused {fused:9.2f}  eager {eager:9.2f}   "
          f"x{eager / fused:.2f}  (saves {eager - fused:.1f} ms per step)", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=["auto", "harness", "standin"], default="auto")
    p.add_argument("--kind", default="ciou", choices=LOSS_KINDS)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--anchors", type=int, default=100_000, help="stand-in: anchors per image")
    p.add_argument("--classes", type=int, default=80, help="stand-in: classes")
    p.add_argument("--positive-fraction", type=float, default=0.02, help="stand-in: share of anchors matched to an object")
    p.add_argument("--image-size", type=int, default=512, help="harness: image side")
    p.add_argument("--harness-classes", type=int, default=20, help="harness: classes of the head (VOC: 20)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=RESULTS_FILE)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(torch.device("cpu"))
    print(describe(env), flush=True)
    rows = []
    if args.workload == "harness" or (args.workload == "auto" and harness_available()):
        rows += measure("harness", harness_step, args, env)
    elif args.workload == "auto":
        print("# alwa_det is not importable: harness step skipped (stand-in only)", flush=True)
    if args.workload in ("auto", "standin"):
        rows += measure("standin", standin_step, args, env)
        rows += measure("standin_box_loss_only", standin_box_loss_only, args, env)
    finish_run(rows, None if args.no_save else args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
