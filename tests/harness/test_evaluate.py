"""VOC AP (area and 11-point) on hand-computed cases, difficult objects, and COCO AP when available."""

import math

import numpy as np
import pytest

from alwa_det.data import Annotation
from alwa_det.evaluate import ImageDetections, coco_map, voc_ap, voc_map

from helpers.harness import single_thread  # noqa: F401  (single_thread: an autouse fixture)


def test_voc_ap_area_and_eleven_point_by_hand():
    # Ranked list TP, FP, TP with 2 objects: recall .5 .5 1, precision 1 .5 .667.
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    # Area: envelope is 1 up to recall .5, then 2/3 up to 1 -> .5 * 1 + .5 * 2/3.
    assert math.isclose(voc_ap(recall, precision), 0.5 + 1 / 3)
    # 11-point: thresholds 0..0.5 (6 points) reach precision 1, 0.6..1.0 (5 points) reach 2/3.
    assert math.isclose(voc_ap(recall, precision, eleven_point=True), (6 * 1 + 5 * 2 / 3) / 11)


def test_voc_ap_with_recall_never_complete():
    # One of four objects found first, then nothing: area .25, 11-point thresholds 0, .1, .2 reach 1.
    recall = np.array([0.25, 0.25])
    precision = np.array([1.0, 0.5])
    assert math.isclose(voc_ap(recall, precision), 0.25)
    assert math.isclose(voc_ap(recall, precision, eleven_point=True), 3 / 11)


def _ann(boxes, labels, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.array(labels, dtype=np.int64)
    difficult = np.zeros(len(labels), dtype=bool) if difficult is None else np.array(difficult)
    return Annotation(boxes, labels, difficult)


def _dets(boxes, scores, labels):
    return ImageDetections(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores, dtype=np.float64),
                           np.array(labels, dtype=np.int64), (100, 100))


def test_voc_map_counts_duplicates_and_ignores_difficult():
    annotations = [_ann([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 0, 0], [False, False, True])]
    detections = [_dets(
        [[0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60], [80, 80, 90, 90], [20, 20, 30, 30]],
        [0.9, 0.8, 0.7, 0.6, 0.5],
        [0, 0, 0, 0, 0],
    )]
    # Ranked: TP, FP (duplicate), ignored (difficult), FP, TP; two countable objects.
    # recall .5 .5 .5 1, precision 1 .5 .333 .5 -> area .5 * 1 + .5 * .5 = .75.
    metrics = voc_map(detections, annotations, num_classes=2)
    assert math.isclose(metrics["map50"], 0.75)
    assert set(metrics["ap50_per_class"]) == {0}  # class 1 has no objects and is left out of the mean


def test_voc_map_perfect_and_empty_images():
    annotations = [_ann([[0, 0, 10, 10]], [1]), _ann([], [])]
    detections = [_dets([[0, 0, 10, 10]], [0.9], [1]), _dets([], [], [])]
    metrics = voc_map(detections, annotations, num_classes=2)
    assert metrics["map50"] == 1.0 and metrics["map50_11pt"] == 1.0


def test_coco_map_perfect_and_shifted():
    pytest.importorskip("pycocotools")
    annotations = [_ann([[0, 0, 40, 40], [50, 50, 90, 80]], [0, 1])]
    perfect = [_dets([[0, 0, 40, 40], [50, 50, 90, 80]], [0.9, 0.8], [0, 1])]
    assert math.isclose(coco_map(perfect, annotations, [(100, 100)]), 1.0)
    # Shifted by 8 px on a 40 px box: IoU 32*40/(48*40) = .667 for class 0, so it counts at
    # thresholds .5, .55, .6, .65 only: AP 4/10; class 1 stays perfect -> mean .7.
    shifted = [_dets([[8, 0, 48, 40], [50, 50, 90, 80]], [0.9, 0.8], [0, 1])]
    assert math.isclose(coco_map(shifted, annotations, [(100, 100)]), 0.7, abs_tol=1e-6)
