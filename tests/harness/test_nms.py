"""NMS against a plain greedy transcription."""

import pytest
import torch

from alwa_det.nms import batched_nms, nms_keep_mask

from helpers.harness import single_thread  # noqa: F401  (single_thread: an autouse fixture)


def brute_force_nms(boxes, scores, threshold):
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(count, generator):
    # Crowded: many pairs overlap at every threshold tested.
    corners = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 30
    sizes = 10 + torch.rand(count, 2, generator=generator, dtype=torch.float64) * 30
    return torch.cat([corners, corners + sizes], dim=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, threshold):
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(60, generator)
    scores = torch.rand(60, generator=generator, dtype=torch.float64)
    expected = brute_force_nms(boxes.tolist(), scores.tolist(), threshold)
    kept = batched_nms(boxes, scores, torch.zeros(60, dtype=torch.long), threshold)
    assert kept.tolist() == expected
    # The fixed-shape version used inside the training step gives the same set.
    mask = nms_keep_mask(boxes[None], scores[None], torch.ones(1, 60, dtype=torch.bool), threshold)[0]
    assert set(torch.nonzero(mask).flatten().tolist()) == set(expected)
    # The inference version stops at the cap with the best survivors.
    assert batched_nms(boxes, scores, torch.zeros(60, dtype=torch.long), threshold, max_keep=3).tolist() == expected[:3]
    assert len(expected) < 60  # the case is not trivial


def test_classwise_nms_keeps_classes_apart_and_batched_mask_respects_validity():
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(40, generator)
    scores = torch.rand(40, generator=generator, dtype=torch.float64)
    classes = torch.randint(0, 3, (40,), generator=generator)
    kept = set(batched_nms(boxes, scores, classes, 0.5).tolist())
    expected = set()
    for label in range(3):
        members = [i for i in range(40) if classes[i] == label]
        expected |= {members[k] for k in brute_force_nms(boxes[members].tolist(), scores[members].tolist(), 0.5)}
    assert kept == expected
    # Invalid candidates are never kept and suppress nothing, per image of a batch.
    valid = torch.ones(2, 40, dtype=torch.bool)
    valid[1, ::2] = False
    mask = nms_keep_mask(torch.stack([boxes, boxes]), torch.stack([scores, scores]), valid, 0.5)
    assert not (mask[1] & ~valid[1]).any()
    odd = list(range(1, 40, 2))
    expected_odd = {odd[k] for k in brute_force_nms(boxes[odd].tolist(), scores[odd].tolist(), 0.5)}
    assert set(torch.nonzero(mask[1]).flatten().tolist()) == expected_odd
    assert set(torch.nonzero(mask[0]).flatten().tolist()) == set(brute_force_nms(boxes.tolist(), scores.tolist(), 0.5))


def test_nms_of_nothing():
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
