"""Datasets (synthetic shapes, VOC, COCO), the resize / flip transform, batching and sampling.

Every dataset yields :class:`Sample` s of uint8 images resized so the longer side is
``image_size``; :func:`collate` pads a batch to a square and its objects to a common count with a
validity mask, the fixed shapes the detectors' training steps rely on. Random flips come from the
sampler (a flag travels with each index), so a run is reproducible from its seed, and resumable
mid-epoch, whatever the number of loader workers.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from torch import Tensor

from .config import DATASETS

SYNTHETIC_CLASSES = ("rectangle", "ellipse", "triangle")
# The classes of the pretraining task (alwa_det.pretrain): other shapes than the detector's, as
# ImageNet's classes are other than VOC's.
PRETRAIN_CLASSES = ("pentagon", "hexagon", "star", "cross", "ring", "diamond")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


class DatasetError(ValueError):
    """Bad data on disk; the message names the file."""


@dataclass
class Annotation:
    """One image's objects in its original pixel frame (xyxy, continuous coordinates)."""

    boxes: np.ndarray  # (n, 4) float32
    labels: np.ndarray  # (n,) int64, 0-based
    difficult: np.ndarray  # (n,) bool: ignored in training and evaluation (VOC difficult, COCO crowd)


@dataclass
class Sample:
    image: Tensor  # (3, h, w) uint8, resized
    boxes: Tensor  # (n, 4) float32, in the resized frame
    labels: Tensor  # (n,) long
    difficult: Tensor  # (n,) bool
    image_id: int
    original_size: Tuple[int, int]  # (height, width) before resizing
    scale: float  # resized = original * scale


@dataclass
class Batch:
    images: Tensor  # (B, 3, S, S) uint8, zero-padded at the bottom and right
    gt_boxes: Tensor  # (B, G, 4)
    gt_labels: Tensor  # (B, G)
    gt_valid: Tensor  # (B, G) bool: a real, non-difficult object
    samples: List[Sample] = field(repr=False)

    def to(self, device) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.images), move(self.gt_boxes), move(self.gt_labels), move(self.gt_valid), self.samples)


SampleKey = Union[int, Tuple[int, bool]]


class DetectionDataset(torch.utils.data.Dataset):
    """Base: subclasses provide ``class_names``, ``__len__``, ``image_id``, ``annotation`` and ``load_image``."""

    class_names: Sequence[str] = ()

    def __init__(self, image_size: int):
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
        self.image_size = image_size

    def image_id(self, index: int) -> int:
        return index

    def annotation(self, index: int) -> Annotation:
        raise NotImplementedError

    def load_image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def __getitem__(self, key: SampleKey) -> Sample:
        index, flip = (key, False) if isinstance(key, int) else key
        image = self.load_image(index)
        annotation = self.annotation(index)
        width, height = image.size
        scale = self.image_size / max(width, height)
        new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
        if (new_width, new_height) != (width, height):
            image = image.resize((new_width, new_height), Image.BILINEAR)
        boxes = torch.from_numpy(annotation.boxes.astype(np.float32)).reshape(-1, 4) * scale
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            boxes = torch.stack([new_width - boxes[:, 2], boxes[:, 1], new_width - boxes[:, 0], boxes[:, 3]], dim=1)
        # Channel-first layout in NumPy: the same copy through torch's uint8 path is far slower on CPU.
        pixels = torch.from_numpy(np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)))
        return Sample(
            image=pixels,
            boxes=boxes,
            labels=torch.from_numpy(annotation.labels.astype(np.int64)).reshape(-1),
            difficult=torch.from_numpy(annotation.difficult.astype(bool)).reshape(-1),
            image_id=self.image_id(index),
            original_size=(height, width),
            scale=scale,
        )


def collate(samples: List[Sample]) -> Batch:
    size = max(max(s.image.shape[1], s.image.shape[2]) for s in samples)
    # At least one object slot, so an all-empty batch still has well-formed (B, 1, ...) tensors.
    max_objects = max(1, max(len(s.labels) for s in samples))
    images = torch.zeros(len(samples), 3, size, size, dtype=torch.uint8)
    gt_boxes = torch.zeros(len(samples), max_objects, 4)
    gt_labels = torch.zeros(len(samples), max_objects, dtype=torch.long)
    gt_valid = torch.zeros(len(samples), max_objects, dtype=torch.bool)
    for i, s in enumerate(samples):
        images[i, :, : s.image.shape[1], : s.image.shape[2]] = s.image
        count = len(s.labels)
        gt_boxes[i, :count] = s.boxes
        gt_labels[i, :count] = s.labels
        gt_valid[i, :count] = ~s.difficult
    return Batch(images, gt_boxes, gt_labels, gt_valid, samples)


class TrainBatchSampler(torch.utils.data.Sampler):
    """Batches of (index, flip) keys for one rank, reproducible from (seed, epoch).

    Each epoch is a permutation drawn from (seed, epoch), dealt out to ranks the way
    ``DistributedSampler`` does (it is used for the dealing), cut into full batches; flips are
    drawn from the same generator. ``start_batch`` skips batches already trained on, for resume.
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, flip: bool = True):
        self.sampler = torch.utils.data.DistributedSampler(
            range(dataset_size), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        if len(self.sampler) < batch_size:
            raise ValueError(
                f"the training set has {dataset_size} images, too few for batches of {batch_size} on {world_size} process(es)"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.flip = flip
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch = epoch
        self.start_batch = start_batch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[List[Tuple[int, bool]]]:
        indices = list(self.sampler)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        flips = (torch.rand(len(indices), generator=generator) < 0.5).tolist() if self.flip else [False] * len(indices)
        for batch in range(self.start_batch, len(self)):
            chunk = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            yield list(zip(indices[chunk], flips[chunk]))


# --- synthetic shapes -------------------------------------------------------------------------


class SyntheticShapes(DetectionDataset):
    """Filled rectangles, ellipses and triangles on textured, noisy backgrounds.

    Image ``index`` of ``seed`` is always the same picture (its generator is seeded by both), so
    no data is stored. Shapes vary in size (about 9% to 50% of the image side), aspect ratio
    (1:2 to 2:1) and colour; they may overlap a little (at most a quarter of the smaller box) and a
    later one is drawn over an earlier one, so no object is hidden beyond recognition. Colours are random, so the class is told by the outline alone.
    """

    def __init__(self, num_images: int, image_size: int, seed: int, max_objects: int = 5,
                 class_names: Sequence[str] = SYNTHETIC_CLASSES):
        super().__init__(image_size)
        unknown = [name for name in class_names if name not in SHAPES]
        if not class_names or unknown:
            raise ValueError(f"class_names: expected shapes among {', '.join(SHAPES)}, got {list(class_names)!r}")
        self.class_names = tuple(class_names)
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be positive, got {max_objects}")
        self.num_images = num_images
        self.seed = seed
        self.max_objects = max_objects
        self._rendered: dict = {}

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def _render(self, index: int) -> Tuple[Image.Image, Annotation]:
        rng = self._rng(index)
        size = self.image_size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        base = rng.uniform(40, 215, size=3)
        tilt = rng.uniform(-60, 60, size=(2, 3))
        background = base + xs[..., None] * tilt[0] + ys[..., None] * tilt[1]
        for _ in range(3):  # a few random stripes of texture
            frequency = rng.uniform(2, 12, size=2)
            phase = rng.uniform(0, 2 * math.pi)
            amplitude = rng.uniform(5, 25, size=3)
            background += np.sin(2 * math.pi * (frequency[0] * xs + frequency[1] * ys) + phase)[..., None] * amplitude
        image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            for _attempt in range(20):
                side = rng.uniform(0.09, 0.5) * size
                aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                width, height = side * math.sqrt(aspect), side / math.sqrt(aspect)
                width, height = min(width, size * 0.9), min(height, size * 0.9)
                x1 = rng.uniform(0, size - width)
                y1 = rng.uniform(0, size - height)
                box = np.array([x1, y1, x1 + width, y1 + height])
                if all(_overlap_of_smaller(box, other) <= 0.25 for other in boxes):
                    break
            else:
                continue
            label = int(rng.integers(len(self.class_names)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            SHAPES[self.class_names[label]](draw, box, colour, rng)
            boxes.append(box)
            labels.append(label)
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, size=(size, size, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        annotation = Annotation(
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            difficult=np.zeros(len(labels), dtype=bool),
        )
        return image, annotation

    def _render_once(self, index: int) -> Tuple[Image.Image, Annotation]:
        # Drawing is a third of a demo training step on CPU, and every epoch asks for the same
        # pictures: keep them (3 * size^2 bytes each; 100 MB for the demo's 2000 images).
        if index not in self._rendered:
            self._rendered[index] = self._render(index)
        return self._rendered[index]

    def annotation(self, index: int) -> Annotation:
        return self._render_once(index)[1]

    def load_image(self, index: int) -> Image.Image:
        return self._render_once(index)[0]


def _regular_polygon(box: np.ndarray, corners: int, turn: float, inner: float = 1.0) -> List[Tuple[float, float]]:
    """A regular polygon (a star where ``inner`` < 1: every other point at that fraction of the
    radius) stretched to fill ``box``, its first point at angle ``turn`` from the top."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    points = corners * (2 if inner < 1 else 1)
    radius = [1.0 if k % 2 == 0 or inner >= 1 else inner for k in range(points)]
    angles = [turn + 2 * math.pi * k / points for k in range(points)]
    return [(cx + rx * r * math.sin(a), cy - ry * r * math.cos(a)) for r, a in zip(radius, angles)]


def _draw_triangle(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    draw.polygon([(x1, y2), (x2, y2), (float(rng.uniform(x1, x2)), y1)], fill=colour)


def _draw_cross(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    bar_x, bar_y = (x2 - x1) / 6, (y2 - y1) / 6
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    draw.rectangle([cx - bar_x, y1, cx + bar_x, y2], fill=colour)
    draw.rectangle([x1, cy - bar_y, x2, cy + bar_y], fill=colour)


def _draw_ring(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    draw.ellipse([x1, y1, x2, y2], outline=colour, width=max(2, int(min(x2 - x1, y2 - y1) / 6)))


# How each shape class is drawn into its box: the detector's classes first, then the pretraining's.
# A drawer draws from ``rng`` only what its own shape needs, so each class set's images are its own.
SHAPES = {
    "rectangle": lambda draw, box, colour, rng: draw.rectangle(list(box), fill=colour),
    "ellipse": lambda draw, box, colour, rng: draw.ellipse(list(box), fill=colour),
    "triangle": _draw_triangle,
    "pentagon": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 5, 0.0), fill=colour),
    "hexagon": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 6, math.pi / 6), fill=colour),
    "star": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 5, 0.0, inner=0.45), fill=colour),
    "cross": _draw_cross,
    "ring": _draw_ring,
    "diamond": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 4, 0.0), fill=colour),
}


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes as a fraction of the smaller one's area."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter_w * inter_h / smaller if smaller > 0 else 0.0


# --- files on disk ------------------------------------------------------------------------------


def _open_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: image file not found") from error
    # ImportError: an image plugin patched into PIL (ultralytics adds a HEIF fallback when it is
    # imported) may fail to import its decoder on a file PIL itself cannot identify.
    except (UnidentifiedImageError, OSError, ImportError) as error:
        raise DatasetError(f"{path}: cannot read the image ({error})") from error


def checked_box(what: str, values: Sequence[float], corners: Sequence[float], negative: bool) -> List[float]:
    """``corners`` (x1, y1, x2, y2, from the file's ``values``) if they are finite in float32 and not
    ``negative`` in size: a NaN box trains a NaN model, or is silently taken for background."""
    with np.errstate(over="ignore"):
        finite = np.isfinite(np.asarray(corners, dtype=np.float32)).all()
    if not finite:
        raise DatasetError(f"{what} has a non-finite box {tuple(values)}")
    if negative:
        raise DatasetError(f"{what} has a box of negative size {tuple(values)}")
    return list(corners)


def _refuse_repeats(path: str, what: str, values: Sequence[object]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise DatasetError(f"{path}: {what} {value!r} appears more than once")
        seen.add(value)


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} not found")


class VOCDetection(DetectionDataset):
    """A VOC year folder (e.g. VOCdevkit/VOC2007): ImageSets/Main/<split>.txt, Annotations/*.xml, JPEGImages/.

    Boxes follow the toolkit's 1-based inclusive pixels: (xmin - 1, ymin - 1, xmax, ymax) in
    continuous coordinates. Objects marked ``difficult`` are kept but ignored in training and
    evaluation. All XML files are parsed up front, so bad annotations fail at once, by name.
    """

    class_names = VOC_CLASSES

    def __init__(self, root: str, split: str, image_size: int, class_names: Optional[Sequence[str]] = None):
        super().__init__(image_size)
        if class_names is not None:
            self.class_names = tuple(class_names)
        _require_dir(root, "VOC data root")
        split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise DatasetError(f"{split_file}: split list not found (is {root} a VOC year folder such as VOCdevkit/VOC2007?)")
        with open(split_file) as handle:
            self.names = [line.split()[0] for line in handle if line.strip()]
        _refuse_repeats(split_file, "image", self.names)
        self.root = root
        self.class_index = {name: i for i, name in enumerate(self.class_names)}
        self.annotations = [self._parse(name) for name in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def _parse(self, name: str) -> Annotation:
        path = os.path.join(self.root, "Annotations", f"{name}.xml")
        try:
            tree = ElementTree.parse(path)
        except FileNotFoundError as error:
            raise DatasetError(f"{path}: annotation file not found") from error
        except ElementTree.ParseError as error:
            raise DatasetError(f"{path}: malformed XML ({error})") from error
        boxes, labels, difficult = [], [], []
        for number, obj in enumerate(tree.getroot().iter("object"), start=1):
            class_name = (obj.findtext("name") or "").strip()
            if class_name not in self.class_index:
                raise DatasetError(f"{path}: object {number} has unknown class {class_name!r}; "
                                   f"known classes: {', '.join(self.class_names)}")
            what = f"{path}: object {number} ({class_name!r})"
            box = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError) as error:
                raise DatasetError(f"{what} has a missing or non-numeric bndbox") from error
            # The toolkit's 1-based inclusive pixels to continuous coordinates.
            boxes.append(checked_box(what, (xmin, ymin, xmax, ymax), (xmin - 1, ymin - 1, xmax, ymax),
                                     negative=xmax < xmin or ymax < ymin))
            labels.append(self.class_index[class_name])
            difficult.append((obj.findtext("difficult") or "0").strip() == "1")
        return Annotation(
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            difficult=np.array(difficult, dtype=bool),
        )

    def annotation(self, index: int) -> Annotation:
        return self.annotations[index]

    def load_image(self, index: int) -> Image.Image:
        return _open_rgb(os.path.join(self.root, "JPEGImages", f"{self.names[index]}.jpg"))


class COCODetection(DetectionDataset):
    """A COCO-style folder: annotations/instances_<split>.json and images in <split>/.

    Category ids map to 0-based labels in increasing id order. Crowd regions are kept as
    ignored objects, like VOC's difficult ones. Images without annotations are valid.
    """

    def __init__(self, root: str, split: str, image_size: int):
        super().__init__(image_size)
        _require_dir(root, "COCO data root")
        path = os.path.join(root, "annotations", f"instances_{split}.json")
        try:
            with open(path) as handle:
                content = json.load(handle)
        except FileNotFoundError as error:
            raise DatasetError(f"{path}: annotation file not found") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{path}: malformed JSON ({error})") from error
        try:
            categories = sorted(content["categories"], key=lambda c: c["id"])
            if not categories:
                raise DatasetError(f"{path}: no categories (a detector needs at least one class)")
            self.category_ids = [int(c["id"]) for c in categories]
            _refuse_repeats(path, "category id", self.category_ids)
            self.class_names = tuple(str(c["name"]) for c in categories)
            self.images = [(int(i["id"]), str(i["file_name"])) for i in content["images"]]
            # Two images under one id would have their annotations merged.
            _refuse_repeats(path, "image id", [image_id for image_id, _ in self.images])
            label_of = {cid: label for label, cid in enumerate(self.category_ids)}
            per_image = {image_id: ([], [], []) for image_id, _ in self.images}
            for ann in content.get("annotations", []):
                if ann["category_id"] not in label_of:
                    raise DatasetError(f"{path}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
                if ann["image_id"] not in per_image:
                    raise DatasetError(f"{path}: annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}")
                x, y, w, h = (float(v) for v in ann["bbox"])
                boxes, labels, crowd = per_image[ann["image_id"]]
                boxes.append(checked_box(f"{path}: annotation {ann.get('id')}", (x, y, w, h), (x, y, x + w, y + h),
                                         negative=w < 0 or h < 0))
                labels.append(label_of[ann["category_id"]])
                crowd.append(bool(ann.get("iscrowd", 0)))
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"{path}: not a COCO instances file ({type(error).__name__}: {error})") from error
        self.annotations = [
            Annotation(
                boxes=np.array(per_image[i][0], dtype=np.float32).reshape(-1, 4),
                labels=np.array(per_image[i][1], dtype=np.int64),
                difficult=np.array(per_image[i][2], dtype=bool),
            )
            for i, _ in self.images
        ]
        self.image_dir = os.path.join(root, split)

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        return self.images[index][0]

    def annotation(self, index: int) -> Annotation:
        return self.annotations[index]

    def load_image(self, index: int) -> Image.Image:
        return _open_rgb(os.path.join(self.image_dir, self.images[index][1]))


def build_dataset(name: str, split: str, image_size: int, data_root: Optional[str], seed: int, synthetic_images: int) -> DetectionDataset:
    """``split`` is 'train' or 'eval' for synthetic data; a file split name for VOC and COCO."""
    if name == "synthetic":
        # Train and evaluation images come from disjoint generator streams of the same seed.
        stream = seed if split == "train" else seed + 7_919_000
        return SyntheticShapes(synthetic_images, image_size, stream)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not data_root:
        raise ValueError(f"--data-root is required for the {name} dataset")
    if name == "voc":
        return VOCDetection(data_root, split, image_size)
    return COCODetection(data_root, split, image_size)
