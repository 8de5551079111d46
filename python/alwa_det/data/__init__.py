"""Datasets (synthetic shapes, VOC, COCO), the resize / flip transform, batching and sampling;
:func:`build_dataset` makes the one a config names.

The names the harness uses are all here: ``from alwa_det.data import SyntheticShapes, collate``.
"""
from __future__ import annotations

from typing import Optional

from ..config import DATASETS
from .base import (Annotation, Batch, DatasetError, DetectionDataset, Sample, SampleKey, TrainBatchSampler, checked_box,
                   collate)
from .coco import COCODetection
from .synthetic import PRETRAIN_CLASSES, SHAPES, SYNTHETIC_CLASSES, SyntheticShapes
from .voc import VOC_CLASSES, VOCDetection

__all__ = ["Annotation", "Batch", "COCODetection", "DatasetError", "DetectionDataset", "PRETRAIN_CLASSES", "SHAPES",
           "SYNTHETIC_CLASSES", "Sample", "SampleKey", "SyntheticShapes", "TrainBatchSampler", "VOCDetection",
           "VOC_CLASSES", "build_dataset", "checked_box", "collate"]


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
