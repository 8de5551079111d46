"""The YOLO loss stage, fused against ultralytics' own, side by side in one run.

Needs ultralytics (>= 8.4: ``make venv-latest`` installs it in .venv-latest). Sections:

* ``assigner``: ``TaskAlignedAssigner`` (topk 10, 80 classes, alpha 0.5, beta 6, as
  v8DetectionLoss builds it) against :class:`FusedTaskAlignedAssigner`, batch 16 at 640 pixels
  (8400 anchors), 10 / 100 / 400 / 1000 boxes per image, random predictions: time, and the
  host memory one call adds at its peak (its outputs included; the fused op's reused output
  memory is let go first, so it allocates them like ultralytics).
* ``dfl``: ultralytics' ``DFLoss`` eager and under ``torch.compile`` against
  :func:`alwa_ext.distribution_focal_loss`, forward + backward, on the foreground boxes of
  batch 16 at 640 with 8 and 100 boxes per image (1,500 and 16,000 boxes, 16 bins).
* ``loss``: the YOLOv8n loss stage (``v8DetectionLoss`` against ``build_criterion``'s
  :class:`AlwaDetectionLoss`, ALWA off), forward + backward to the head's outputs, batch 16 at
  640, 80 classes, 8 and 100 boxes per image, on the outputs of a yolov8n.yaml model.
* ``step``: a YOLOv8n training step (forward, loss, backward, SGD step) with each criterion,
  and the share of it the loss stage takes (``loss`` section's medians over this one's).

    make bench-yolo                                                  # everything, both thread counts
    .venv-latest/bin/python -P benchmarks/bench_yolo.py --sections assigner --threads 2

Timing and results follow benchmarks.common (providers taking turns call by call, medians,
ratios within one run); rows are appended to benchmarks/results/bench_yolo.jsonl.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

if __package__ in (None, ""):
    # After site-packages: under .venv-latest, -P, the installed alwa_ext (built for its torch)
    # is imported, not the tree's.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import torch

import alwa_ext
from benchmarks.common import (RESULTS, describe, environment, finish_run, keep_compiled_graphs, peak_memory_mb,
                               peak_rss_mb, summary_ms, time_interleaved)

RESULTS_FILE = os.path.join(RESULTS, "bench_yolo.jsonl")
SECTIONS = ("assigner", "dfl", "loss", "step")
BATCH, IMAGE, CLASSES, STRIDES = 16, 640, 80, (8, 16, 32)


def ultralytics_modules():
    try:
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import DetectionModel
        from ultralytics.utils.loss import DFLoss, v8DetectionLoss
        from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors
    except ImportError as error:
        raise SystemExit(f"bench_yolo needs ultralytics (make venv-latest): {error}")
    from alwa_ext.integrations.ultralytics import FusedTaskAlignedAssigner, build_criterion

    return dict(get_cfg=get_cfg, DetectionModel=DetectionModel, DFLoss=DFLoss, v8DetectionLoss=v8DetectionLoss,
                TaskAlignedAssigner=TaskAlignedAssigner, make_anchors=make_anchors,
                FusedTaskAlignedAssigner=FusedTaskAlignedAssigner, build_criterion=build_criterion)


def ratio_line(medians: Dict[str, float], base: str) -> str:
    return "  ".join(f"{name} {ms:8.2f} ms" + (f" ({ms / medians[base]:.1f}x {base})" if name != base else "")
                     for name, ms in medians.items())


def report(rows: List[dict], env: dict, times: Dict[str, List[float]], **case) -> Dict[str, float]:
    medians = {}
    for name, seconds in times.items():
        stats = summary_ms(seconds)
        medians[name] = stats["median_ms"]
        rows.append(dict(env, provider=name, repeats=len(seconds), **case, **stats))
    return medians


# --------------------------------------------------------------------------- assigner


def assigner_inputs(boxes_per_image: int, device, make_anchors, seed: int = 0):
    """Random predictions over the 640-pixel pyramid and boxes_per_image gts an image, as
    v8DetectionLoss hands them to the assigner (pixels, float labels, masks)."""
    g = torch.Generator().manual_seed(seed)
    feats = [torch.zeros(BATCH, 1, IMAGE // s, IMAGE // s) for s in STRIDES]
    anchors, stride = make_anchors(feats, torch.tensor(STRIDES, dtype=torch.float32), 0.5)
    A = anchors.shape[0]
    scores = torch.rand(BATCH, A, CLASSES, generator=g)
    dist = torch.rand(BATCH, A, 4, generator=g) * 6
    pred = torch.cat((anchors - dist[..., :2], anchors + dist[..., 2:]), -1) * stride
    centre = torch.rand(BATCH, boxes_per_image, 2, generator=g) * (IMAGE - 80) + 40
    size = torch.rand(BATCH, boxes_per_image, 2, generator=g) * 200 + 2
    gt = torch.cat((centre - size / 2, centre + size / 2), -1)
    labels = torch.randint(0, CLASSES, (BATCH, boxes_per_image, 1), generator=g).float()
    mask = torch.ones(BATCH, boxes_per_image, 1)
    return tuple(t.to(device) for t in (scores, pred, anchors * stride, labels, gt, mask))


def bench_assigner(args, env, rows, u):
    kwargs = dict(topk=10, num_classes=CLASSES, alpha=0.5, beta=6.0, stride=list(STRIDES))
    providers = {"ultralytics": u["TaskAlignedAssigner"](**kwargs), "fused": u["FusedTaskAlignedAssigner"](**kwargs)}
    output_mb = BATCH * 8400 * CLASSES * 4 / 2**20
    for boxes in args.assigner_boxes:
        inputs = assigner_inputs(boxes, args.device, u["make_anchors"])
        calls = {name: (lambda a=a: a(*inputs)) for name, a in providers.items()}
        repeats = args.repeats if boxes <= 400 else max(3, args.repeats // 2)
        times = time_interleaved(calls, repeats=repeats, warmup=1, device=args.device)
        medians = report(rows, env, times, bench="yolo_assigner", boxes_per_image=boxes, batch=BATCH, anchors=8400,
                         classes=CLASSES)
        peaks = {}
        for name, call in calls.items():
            alwa_ext.cpu.empty_cache()
            peak = peak_memory_mb(call, args.device) if args.device.type == "cuda" else peak_rss_mb(call)
            peaks[name] = peak
            for row in rows[-len(calls):]:
                if row["provider"] == name:
                    row["peak_mb"] = peak
        peak_text = ", ".join(f"{n} +{p:.0f} MB" for n, p in peaks.items() if p is not None)
        print(f"assigner {boxes:5d} boxes/image: {ratio_line(medians, 'fused')} | peak {peak_text} "
              f"(target scores output {output_mb:.0f} MB)", flush=True)


# --------------------------------------------------------------------------- DFL


def bench_dfl(args, env, rows, u):
    reg_max = 16
    dfl = u["DFLoss"](reg_max)

    def eager(pred, target, weight, total):
        return (dfl(pred.view(-1, reg_max), target.clone()) * weight).sum() / total

    compiled = torch.compile(eager, dynamic=False)

    def fused(pred, target, weight, total):
        return alwa_ext.distribution_focal_loss(pred.view(-1, 4, reg_max), target, weight=weight[:, 0],
                                                reduction="sum") / (4 * total)

    for boxes in args.dfl_boxes:
        g = torch.Generator().manual_seed(boxes)
        pred = (torch.randn(boxes, 4 * reg_max, generator=g) * 2).to(args.device).requires_grad_()
        target = (torch.rand(boxes, 4, generator=g) * (reg_max - 1.01)).to(args.device)
        weight = torch.rand(boxes, 1, generator=g).to(args.device)
        total = weight.sum()

        def call(fn):
            return torch.autograd.grad(fn(pred, target, weight, total), pred)

        providers = {"fused": fused, "eager": eager, "compiled": compiled}
        times = time_interleaved({n: (lambda f=f: call(f)) for n, f in providers.items()}, repeats=args.repeats * 5,
                                 warmup=3, device=args.device)
        medians = report(rows, env, times, bench="yolo_dfl", boxes=boxes, bins=reg_max)
        print(f"dfl {boxes:6d} boxes: {ratio_line(medians, 'fused')}", flush=True)


# --------------------------------------------------------------------------- loss stage and step


def yolov8n(u):
    torch.manual_seed(0)
    model = u["DetectionModel"]("yolov8n.yaml", nc=CLASSES, verbose=False)
    model.args = u["get_cfg"]()
    return model.train()


def label_batch(boxes_per_image: int, seed: int = 1):
    """ultralytics' training labels: per box its image, class and normalised xywh."""
    g = torch.Generator().manual_seed(seed)
    n = BATCH * boxes_per_image
    centre = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    size = torch.rand(n, 2, generator=g) * 0.3 + 0.01
    return {"batch_idx": torch.arange(BATCH).repeat_interleave(boxes_per_image).float(),
            "cls": torch.randint(0, CLASSES, (n, 1), generator=g).float(), "bboxes": torch.cat((centre, size), 1)}


def criteria(model, u):
    return {"fused": u["build_criterion"](model, alwa=None), "ultralytics": u["v8DetectionLoss"](model)}


def bench_loss(args, env, rows, u, model, images):
    with torch.no_grad():
        preds = model(images)
    results = {}
    for boxes in args.loss_boxes:
        batch = label_batch(boxes)

        def call(criterion):
            leaves = {"boxes": preds["boxes"].detach().requires_grad_(), "scores": preds["scores"].detach().requires_grad_(),
                      "feats": preds["feats"]}
            loss, _ = criterion(leaves, batch)
            return torch.autograd.grad(loss.sum(), (leaves["boxes"], leaves["scores"]))

        times = time_interleaved({n: (lambda c=c: call(c)) for n, c in criteria(model, u).items()},
                                 repeats=args.repeats, warmup=2, device=args.device)
        medians = report(rows, env, times, bench="yolo_loss", boxes_per_image=boxes, batch=BATCH, image=IMAGE,
                         classes=CLASSES, model="yolov8n")
        results[boxes] = medians
        print(f"loss stage {boxes:4d} boxes/image: {ratio_line(medians, 'fused')}", flush=True)
    return results


def bench_step(args, env, rows, u, model, images, loss_medians):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
    for boxes in args.loss_boxes:
        batch = label_batch(boxes)

        def step(criterion):
            loss, _ = criterion(model(images), batch)
            loss.sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        times = time_interleaved({n: (lambda c=c: step(c)) for n, c in criteria(model, u).items()},
                                 repeats=max(3, args.repeats // 3), warmup=1, device=args.device)
        medians = report(rows, env, times, bench="yolo_step", boxes_per_image=boxes, batch=BATCH, image=IMAGE,
                         classes=CLASSES, model="yolov8n")
        share = ""
        if boxes in loss_medians:
            share = " | loss stage " + ", ".join(f"{n} {100 * loss_medians[boxes][n] / ms:.0f}%" for n, ms in medians.items())
            for row in rows[-len(medians):]:
                row["loss_stage_share"] = loss_medians[boxes][row["provider"]] / row["median_ms"]
        print(f"training step {boxes:4d} boxes/image: {ratio_line(medians, 'fused')}{share}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--assigner-boxes", nargs="+", type=int, default=[10, 100, 400, 1000])
    p.add_argument("--dfl-boxes", nargs="+", type=int, default=[1500, 16000])
    p.add_argument("--loss-boxes", nargs="+", type=int, default=[8, 100])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=RESULTS_FILE)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    args.device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_compiled_graphs()
    u = ultralytics_modules()
    import ultralytics

    env = dict(environment(args.device), ultralytics=ultralytics.__version__)
    print(describe(env) + f" | ultralytics {ultralytics.__version__}", flush=True)
    rows: List[dict] = []
    if "assigner" in args.sections:
        bench_assigner(args, env, rows, u)
    if "dfl" in args.sections:
        bench_dfl(args, env, rows, u)
    if "loss" in args.sections or "step" in args.sections:
        model = yolov8n(u).to(args.device)
        images = torch.rand(BATCH, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(2)).to(args.device)
        loss_medians = bench_loss(args, env, rows, u, model, images) if "loss" in args.sections else {}
        if "step" in args.sections:
            bench_step(args, env, rows, u, model, images, loss_medians)
    finish_run(rows, None if args.no_save else args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
