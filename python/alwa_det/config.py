"""Run configuration: the detector's dataclass (and :class:`RunConfig`, what it shares with the
pretraining's), the presets that fill what the user left out, and validation.

Presets depend on the dataset and detector: the synthetic preset *is* the demo (RetinaNet + CIoU
+ ALWA_2, small images and a small network, sized to train on two CPU cores in under five
minutes); the VOC / COCO presets are ordinary detector settings for real images.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar, Dict, FrozenSet, Optional, Tuple

from alwa_ext.kinds import ALWA_UPDATES, LOSS_KINDS

from .backbone import BACKBONES
from .weighting import ALWA_STATISTICS, WEIGHTINGS

DETECTORS = ("retinanet", "faster_rcnn")
DATASETS = ("synthetic", "voc", "coco")

# Where each dataset's preset departs from the paper's setting (ResNet-50 + FPN, 1333x800 images,
# 12 epochs, ALWA with C = 100 in the paper and in its code); `alwa-train demo` prints them.
PAPER_DEPARTURES = {
    "synthetic": ("ALWA's window C = 50 iterations (the paper and its code: 100), so the short schedule has "
                  "30 windows", "1500 iterations of batch 8 on 128-pixel synthetic shapes, a small 4-stage "
                  "backbone trained from scratch unless --backbone-weights (the paper: 12 epochs of VOC/COCO, an "
                  "ImageNet ResNet-50)"),
    "voc": ("20000 iterations, 512-pixel images, a small backbone trained from scratch unless --backbone "
            "resnet50 (the paper: ImageNet ResNet-50, 1333x800 images)",),
    "coco": ("20000 iterations, 512-pixel images, a small backbone trained from scratch unless --backbone "
             "resnet50 (the paper: ImageNet ResNet-50, 1333x800 images, 12 epochs)",),
}


class RunConfig:
    """What a run's configuration is besides its fields (a dataclass: :class:`TrainConfig` for a
    detector, :class:`alwa_det.pretrain.PretrainConfig` for a pretraining): a plain dict in
    config.json and checkpoints, read back with the defaults of fields a saved one lacks, and the
    fields a resumed run may change (:mod:`alwa_det.checkpoint` holds the checks)."""

    KIND: ClassVar[str] = ""  # what the run trains; its checkpoints say so (alwa_det.checkpoint)
    # What a resumed run may change; anything else would make it another run than the one its
    # checkpoint continues. RESUMABLE_CHANGES says it in words, for the error that refuses a resume.
    RESUME_CHANGEABLE: ClassVar[FrozenSet[str]] = frozenset()
    RESUMABLE_CHANGES: ClassVar[str] = ""

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, object]):
        """A validated config of ``values`` (lists, as JSON gives back tuples, become tuples)."""
        fields = dataclasses.fields(cls)
        unknown = sorted(set(values) - {f.name for f in fields})
        if unknown:
            raise ValueError(f"unknown configuration key(s): {', '.join(unknown)}")
        values = dict(values)
        for f in fields:
            if isinstance(f.default, tuple) and values.get(f.name) is not None:
                values[f.name] = tuple(values[f.name])
        return cls(**values).validated()

    @classmethod
    def with_defaults(cls, saved: Dict[str, object]) -> Dict[str, object]:
        """A saved config with the fields added since it was saved at their defaults (what that run did)."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return {**defaults, **saved}

    def is_saved_as(self, saved: object) -> bool:
        """Whether ``saved`` (a config as a metrics.json or checkpoint holds it) is this config."""
        as_json = lambda values: json.loads(json.dumps(values))  # noqa: E731
        return isinstance(saved, dict) and as_json(self.with_defaults(saved)) == as_json(self.to_dict())

    def validated(self):
        """Self, after checking every field; raises ValueError naming the bad one."""
        raise NotImplementedError


def _check_number(name: str, value: object, minimum: float, inclusive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (value == minimum and not inclusive):
        words = "a non-negative finite number" if inclusive else "a positive finite number"
        raise ValueError(f"{name}: expected {words}, got {value!r}")


@dataclass
class SGDSchedule:
    """SGD's settings and its learning-rate schedule (:func:`alwa_det.loop.lr_factor`: a linear
    warm-up from ``warmup_ratio``, then a tenfold drop at each of ``lr_steps``), as the detector
    and the pretraining share them. Each run sets its own ``lr`` and ``lr_steps``."""

    lr: float  # each run's own default
    lr_steps: Tuple[int, ...]  # iterations at which the lr drops tenfold
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    warmup_ratio: float = 0.001

    def check_schedule(self) -> None:
        """Raises ValueError naming the first bad schedule field."""
        _check_number("lr", self.lr, 0, inclusive=False)
        for name in ("momentum", "weight_decay", "warmup_ratio"):
            _check_number(name, getattr(self, name), 0, inclusive=True)
        if not isinstance(self.warmup_iterations, int) or self.warmup_iterations < 0:
            raise ValueError(f"warmup_iterations: expected a non-negative integer, got {self.warmup_iterations!r}")
        if any(s < 1 for s in self.lr_steps) or list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError(f"lr_steps: expected increasing positive iterations, got {self.lr_steps!r}")


def lr_steps_for(iterations: int) -> Tuple[int, int]:
    """The presets' schedule shape for any length: drops at 75% and 90% of the iterations."""
    return max(1, int(iterations * 0.75)), max(1, int(iterations * 0.9))


@dataclass
class TrainConfig(RunConfig, SGDSchedule):
    KIND: ClassVar[str] = "detector"
    RESUME_CHANGEABLE: ClassVar[FrozenSet[str]] = frozenset({
        "iterations", "out", "device", "workers", "threads", "log_interval", "checkpoint_interval", "evaluate",
        "eval_batch_size"})
    RESUMABLE_CHANGES: ClassVar[str] = "its length, device, workers, threads, logging and evaluation"

    detector: str = "retinanet"
    loss: str = "ciou"
    weighting: str = "alwa2"
    cls_weight: float = 1.0
    reg_weight: float = 1.0
    interval: int = 50  # ALWA window, in iterations (the paper and its code: 100; see PAPER_DEPARTURES)
    alwa_update: str = "paper"  # ALWA's rule: "paper" (published) or "stable" (on unweighted losses)
    # The spread ALWA compares: "raw" (the paper's: std of the window) or "detrended" (std of the
    # window's residuals about its least-squares line; alwa_ext.ALWA's `statistic`).
    alwa_statistic: str = "raw"
    dataset: str = "synthetic"
    data_root: Optional[str] = None
    train_split: str = "train"
    eval_split: str = "eval"
    synthetic_train_images: int = 2000
    synthetic_eval_images: int = 200
    out: str = "runs/demo"
    iterations: int = 1500
    batch_size: int = 8
    lr: float = 0.04
    lr_steps: Tuple[int, ...] = (1125, 1350)
    clip_grad: float = 10.0  # max gradient norm; 0 turns clipping off
    image_size: int = 128
    backbone: str = "small"
    # Weights the backbone starts from (`alwa-train pretrain`'s backbone.pt, or a state dict);
    # None trains it from scratch. The heads and the FPN always start fresh.
    backbone_weights: Optional[str] = None
    width: int = 16
    blocks: Tuple[int, ...] = (1, 1, 1, 1)
    fpn_channels: int = 32
    head_convs: int = 2
    min_level: int = 3
    max_level: int = 5
    anchor_scale: float = 2.0
    # Faster R-CNN only: RoIs sampled per image for the RoI head, its hidden width, and the RPN's
    # proposals kept per level before NMS and in all after it.
    roi_samples: int = 128
    roi_hidden: int = 256
    rpn_pre_nms: int = 300
    rpn_post_nms: int = 300
    # The demo loads in the training process (the synthetic images are drawn once and kept, so a
    # loader process would only add transfer costs) on one thread: OpenMP's barriers collapse
    # when the two cores are shared with other work. threads 0 leaves torch's default.
    workers: int = 0
    threads: int = 1
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    log_interval: int = 10
    checkpoint_interval: int = 200
    evaluate: bool = True
    eval_batch_size: int = 16

    def validated(self) -> "TrainConfig":
        choices = {
            "detector": DETECTORS, "loss": LOSS_KINDS, "weighting": WEIGHTINGS,
            "dataset": DATASETS, "backbone": BACKBONES, "alwa_update": ALWA_UPDATES,
            "alwa_statistic": ALWA_STATISTICS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive_ints = ("interval", "iterations", "batch_size", "image_size", "width", "fpn_channels", "log_interval",
                         "checkpoint_interval", "eval_batch_size", "synthetic_train_images", "synthetic_eval_images",
                         "roi_samples", "roi_hidden", "rpn_pre_nms", "rpn_post_nms")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.check_schedule()
        for name in ("cls_weight", "reg_weight", "anchor_scale"):
            _check_number(name, getattr(self, name), 0, inclusive=False)
        _check_number("clip_grad", self.clip_grad, 0, inclusive=True)
        for name in ("workers", "threads", "head_convs", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
        if self.interval < 2:
            raise ValueError(f"interval: ALWA needs at least 2 iterations per window, got {self.interval}")
        if self.image_size < 32:
            raise ValueError(f"image_size: expected at least 32, got {self.image_size}")
        if not 2 <= self.min_level <= 5 or self.max_level < self.min_level or self.max_level > 8:
            raise ValueError(f"levels: need 2 <= min_level <= 5 and min_level <= max_level <= 8, got {self.min_level}..{self.max_level}")
        if len(self.blocks) != 4 or any(b < 1 for b in self.blocks):
            raise ValueError(f"blocks: expected four positive block counts, got {self.blocks!r}")
        if self.dataset in ("voc", "coco") and not self.data_root:
            raise ValueError(f"data_root: the {self.dataset} dataset needs --data-root")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device: expected cpu, cuda or cuda:N, got {self.device!r}")
        if self.backbone_weights is not None and (not isinstance(self.backbone_weights, str) or not self.backbone_weights.strip()):
            raise ValueError(f"backbone_weights: expected a file, got {self.backbone_weights!r}")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"out: expected a run folder, got {self.out!r}")
        if self.seed >= 2**32:
            raise ValueError(f"seed: expected below 2**32, got {self.seed}")
        if self.amp and not self.device.startswith("cuda"):
            raise ValueError(f"amp: mixed precision is for CUDA devices; device is {self.device!r}")
        return self


def preset(dataset: str, detector: str) -> Dict[str, object]:
    """Defaults for a dataset and detector; the user's explicit choices override them."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    if detector not in DETECTORS:
        raise ValueError(f"detector: {detector!r} is not one of {', '.join(DETECTORS)}")
    values: Dict[str, object] = {}
    if dataset == "synthetic":
        if detector == "faster_rcnn":
            # Levels from stride 4, one anchor scale: 16..128 pixel anchors for 12..64 pixel shapes.
            # 64 RoIs per image: RoIAlign is most of a CPU step.
            values.update(min_level=2, max_level=5, anchor_scale=4.0, roi_samples=64, lr=0.02)
        return values
    split = {"voc": ("trainval", "test"), "coco": ("train2017", "val2017")}[dataset]
    values.update(
        train_split=split[0], eval_split=split[1], out=f"runs/{dataset}-{detector}", image_size=512, width=32,
        blocks=(2, 2, 2, 2), fpn_channels=128, head_convs=4, iterations=20000, lr_steps=(15000, 18000),
        interval=100, warmup_iterations=500, log_interval=20, checkpoint_interval=1000, roi_samples=512,
        roi_hidden=1024, rpn_pre_nms=1000, rpn_post_nms=1000, threads=0, workers=4, lr=0.01,
    )
    if detector == "retinanet":
        values.update(min_level=3, max_level=7, anchor_scale=4.0)
    else:
        values.update(min_level=2, max_level=6, anchor_scale=8.0)
    return values


def make_config(explicit: Dict[str, object]) -> TrainConfig:
    """A validated config: dataclass defaults, then the preset, then the ``explicit`` values."""
    dataset = explicit.get("dataset", TrainConfig.dataset)
    detector = explicit.get("detector", TrainConfig.detector)
    values = preset(dataset, detector)
    values.update(explicit)
    if "iterations" in explicit and "lr_steps" not in explicit:
        values["lr_steps"] = lr_steps_for(int(explicit["iterations"]))
    return TrainConfig.from_dict(values)
