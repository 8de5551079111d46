"""Evaluation: detection metrics (VOC AP at IoU 0.5, area under the curve and 11-point, and
COCO-style AP@[.5:.95] through pycocotools or faster-coco-eval when one of them is installed), and
the evaluation of a saved run (``alwa-train eval``)."""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

import alwa_ext

from .checkpoint import load_weights
from .config import TrainConfig, preset
from .data import Annotation, DetectionDataset, build_dataset, collate
from .distributed import resolve_device
from .models import build_detector
from .run_folder import EVAL_METRICS_FILE, RunFolderError, describe, write_json_atomically


@dataclass
class ImageDetections:
    """Detections of one image in its original pixel frame."""

    boxes: np.ndarray  # (K, 4)
    scores: np.ndarray  # (K,)
    labels: np.ndarray  # (K,)
    original_size: tuple = (0, 0)  # (height, width) of the image


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """Average precision of a ranked list with cumulative ``recall`` and ``precision``.

    Area mode (VOC 2010+): the area under the precision envelope (precision made monotonically
    decreasing), summed where recall changes. 11-point mode (VOC 2007): the mean over recall
    thresholds 0, 0.1, ..., 1 of the best precision at recall >= the threshold.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if eleven_point:
        points = []
        for threshold in np.linspace(0, 1, 11):
            reached = precision[recall >= threshold]
            points.append(reached.max() if reached.size else 0.0)
        return float(np.mean(points))
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def _iou_matrix(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    if len(boxes1) == 0 or len(boxes2) == 0:
        return np.zeros((len(boxes1), len(boxes2)))
    # float64: IoU exactly at the 0.5 threshold must not flip with rounding.
    return alwa_ext.box_iou(torch.from_numpy(boxes1).double(), torch.from_numpy(boxes2).double()).numpy()


def voc_map(
    detections: Sequence[ImageDetections], annotations: Sequence[Annotation], num_classes: int, iou_threshold: float = 0.5
) -> Dict[str, object]:
    """VOC mAP (area and 11-point) over the classes that have at least one non-difficult object.

    Detections are ranked by score per class; each claims the unclaimed object it overlaps best
    with IoU >= ``iou_threshold``. A detection whose best object is difficult counts as neither a
    true nor a false positive, and difficult objects do not count towards recall.
    """
    per_class_area, per_class_11 = {}, {}
    for label in range(num_classes):
        scored = []  # (score, image, is_true_positive or None for ignored)
        num_objects = 0
        for image, (dets, ann) in enumerate(zip(detections, annotations)):
            gt_mask = ann.labels == label
            gt_boxes = ann.boxes[gt_mask]
            gt_difficult = ann.difficult[gt_mask]
            num_objects += int((~gt_difficult).sum())
            det_mask = dets.labels == label
            det_boxes, det_scores = dets.boxes[det_mask], dets.scores[det_mask]
            order = np.argsort(-det_scores, kind="stable")
            iou = _iou_matrix(det_boxes[order], gt_boxes)
            claimed = np.zeros(len(gt_boxes), dtype=bool)
            for rank, det in enumerate(order):
                outcome = False
                if iou.shape[1]:
                    best = int(iou[rank].argmax())
                    if iou[rank, best] >= iou_threshold:
                        if gt_difficult[best]:
                            outcome = None
                        elif not claimed[best]:
                            claimed[best] = True
                            outcome = True
                scored.append((float(det_scores[det]), image, outcome))
        if num_objects == 0:
            continue
        scored = [s for s in scored if s[2] is not None]
        scored.sort(key=lambda s: -s[0])
        true_positive = np.array([s[2] for s in scored], dtype=np.float64)
        cumulative_tp = np.cumsum(true_positive)
        cumulative_fp = np.cumsum(1 - true_positive)
        recall = cumulative_tp / num_objects
        precision = cumulative_tp / np.maximum(cumulative_tp + cumulative_fp, np.finfo(np.float64).eps)
        per_class_area[label] = voc_ap(recall, precision)
        per_class_11[label] = voc_ap(recall, precision, eleven_point=True)
    mean = lambda values: float(np.mean(list(values))) if values else 0.0  # noqa: E731
    return {
        "map50": mean(per_class_area.values()),
        "map50_11pt": mean(per_class_11.values()),
        "ap50_per_class": per_class_area,
    }


def _coco_eval_classes():
    """(COCO, COCOeval) from pycocotools or faster-coco-eval, or None when neither is installed."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    except ImportError:
        pass
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    except ImportError:
        return None


def coco_evaluator_installed() -> bool:
    return _coco_eval_classes() is not None


def coco_map(detections: Sequence[ImageDetections], annotations: Sequence[Annotation], image_sizes) -> Optional[float]:
    """COCO AP@[.5:.95] (all areas, 100 detections), or None without a COCO evaluation package.

    Difficult (and crowd) objects become COCO crowd regions, which the evaluator ignores.
    """
    classes = _coco_eval_classes()
    if classes is None:
        return None
    COCO, COCOeval = classes
    images, gt, dt = [], [], []
    for image_id, (dets, ann, (height, width)) in enumerate(zip(detections, annotations, image_sizes), start=1):
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for box, label, difficult in zip(ann.boxes, ann.labels, ann.difficult):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            gt.append({"id": len(gt) + 1, "image_id": image_id, "category_id": int(label) + 1, "bbox": [float(box[0]), float(box[1]), w, h],
                       "area": w * h, "iscrowd": int(difficult)})
        for box, score, label in zip(dets.boxes, dets.scores, dets.labels):
            dt.append({"image_id": image_id, "category_id": int(label) + 1, "score": float(score),
                       "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    num_classes = 1 + max([g["category_id"] for g in gt] + [d["category_id"] for d in dt] + [1])
    with contextlib.redirect_stdout(io.StringIO()):  # the evaluators print progress tables
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": gt, "categories": [{"id": i} for i in range(1, num_classes)]}
        ground_truth.createIndex()
        if not gt:
            return 0.0
        if not dt:
            return 0.0
        predictions = ground_truth.loadRes(dt)
        evaluator = COCOeval(ground_truth, predictions, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(0.0, float(evaluator.stats[0]))


@torch.no_grad()
def predict(model, dataset: DetectionDataset, device, batch_size: int = 8, limit: Optional[int] = None) -> List[ImageDetections]:
    """Run ``model.detect`` over the dataset (no flips) and map boxes back to each original frame."""
    was_training = model.training
    model.eval()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    results = []
    for start in range(0, count, batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        for sample, dets in zip(batch.samples, model.detect(batch.images.to(device))):
            results.append(
                ImageDetections(
                    boxes=(dets.boxes / sample.scale).cpu().numpy().astype(np.float64),
                    scores=dets.scores.cpu().numpy().astype(np.float64),
                    labels=dets.labels.cpu().numpy(),
                    original_size=sample.original_size,
                )
            )
    model.train(was_training)
    return results


def evaluate(model, dataset: DetectionDataset, device, batch_size: int = 8) -> Dict[str, object]:
    """``map50``, ``map50_11pt``, ``ap50_per_class`` and, when an evaluator is installed, ``map``."""
    detections = predict(model, dataset, device, batch_size)
    annotations = [dataset.annotation(i) for i in range(len(dataset))]
    metrics = voc_map(detections, annotations, len(dataset.class_names))
    coco = coco_map(detections, annotations, [d.original_size for d in detections])
    if coco is not None:
        metrics["map"] = coco
    metrics["ap50_per_class"] = {dataset.class_names[k]: v for k, v in metrics["ap50_per_class"].items()}
    return metrics


def evaluate_checkpoint(checkpoint_path: str, dataset: Optional[str], data_root: Optional[str], split: Optional[str],
                        device: str, out: Optional[str]) -> Dict[str, object]:
    """Evaluate a checkpoint (a run folder, a checkpoint file, or model_final.pt beside its config.json),
    on its own evaluation data or on ``dataset`` / ``data_root`` / ``split``; eval_metrics.json in ``out``."""
    config, state = load_weights(checkpoint_path)
    overrides = {"device": device}
    if dataset is not None and dataset != config.dataset:
        overrides.update(dataset=dataset, data_root=data_root)
        if split is None:
            overrides["eval_split"] = preset(dataset, config.detector).get("eval_split", "eval")
    elif data_root is not None:
        overrides["data_root"] = data_root
    if split is not None:
        overrides["eval_split"] = split
    config = TrainConfig.from_dict({**config.to_dict(), **overrides, "amp": False})
    device_obj = resolve_device(config.device)
    eval_set = build_dataset(config.dataset, config.eval_split, config.image_size, config.data_root, config.seed,
                             config.synthetic_eval_images)
    model = build_detector(config, len(eval_set.class_names))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint_path}: the weights do not fit a {config.detector} with "
                         f"{len(eval_set.class_names)} classes ({str(error).splitlines()[0]})") from error
    model.to(device_obj)
    metrics = evaluate(model, eval_set, device_obj, config.eval_batch_size)
    if out:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"--out {out}: cannot create the folder ({describe(error)})") from error
        write_json_atomically(metrics, os.path.join(out, EVAL_METRICS_FILE))
    return metrics
