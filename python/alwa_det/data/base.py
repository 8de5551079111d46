"""What every dataset shares: the samples and batches the detectors train on, the resize / flip
transform of :class:`DetectionDataset`, :func:`collate`, the training sampler, and the checks the
datasets on disk make of their files.

Every dataset yields :class:`Sample` s of uint8 images resized so the longer side is
``image_size``; :func:`collate` pads a batch to a square and its objects to a common count with a
validity mask, the fixed shapes the detectors' training steps rely on. Random flips come from the
sampler (a flag travels with each index), so a run is reproducible from its seed, and resumable
mid-epoch, whatever the number of loader workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor


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


# --- what the datasets on disk (VOC, COCO) share ---------------------------------------------------


def open_rgb(path: str) -> Image.Image:
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


def refuse_repeats(path: str, what: str, values: Sequence[object]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise DatasetError(f"{path}: {what} {value!r} appears more than once")
        seen.add(value)


def require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} not found")
