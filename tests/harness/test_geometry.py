"""Anchors, the box coder and the matcher/sampler."""

import math

import pytest
import torch

from alwa_det.anchors import AnchorGenerator
from alwa_det.box_coder import DeltaBoxCoder
from alwa_det.detector_base import flatten_levels
from alwa_det.matcher import IoUMatcher, batched_iou, gather_gt, sample_fixed

from helpers.harness import single_thread  # noqa: F401  (single_thread: an autouse fixture)


def test_anchor_shapes_sizes_and_centres():
    generator = AnchorGenerator(strides=(8, 16), base_scale=4.0, scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), ratios=(0.5, 1.0, 2.0))
    levels = generator.grid_anchors([(4, 6), (2, 3)])
    assert [tuple(level.shape) for level in levels] == [(4 * 6 * 9, 4), (2 * 3 * 9, 4)]
    first = levels[0].view(4, 6, 9, 4)
    widths = first[..., 2] - first[..., 0]
    heights = first[..., 3] - first[..., 1]
    centres_x = (first[..., 0] + first[..., 2]) / 2
    centres_y = (first[..., 1] + first[..., 3]) / 2
    # Centres sit in the middle of each cell: row 1, column 2 -> (2.5 * 8, 1.5 * 8).
    assert torch.allclose(centres_x[1, 2], torch.full((9,), 20.0))
    assert torch.allclose(centres_y[1, 2], torch.full((9,), 12.0))
    # Ratio-major order: anchor 0 is ratio 0.5 scale 1: area (4*8)^2, height/width 0.5.
    assert math.isclose(float(widths[0, 0, 0] * heights[0, 0, 0]), 32.0**2, rel_tol=1e-5)
    assert math.isclose(float(heights[0, 0, 0] / widths[0, 0, 0]), 0.5, rel_tol=1e-5)
    assert math.isclose(float(heights[0, 0, 8] / widths[0, 0, 8]), 2.0, rel_tol=1e-5)
    assert math.isclose(float(widths[0, 0, 5] * heights[0, 0, 5]), (32.0 * 2 ** (2 / 3)) ** 2, rel_tol=1e-5)


def test_anchor_order_matches_flattened_head_outputs():
    generator = AnchorGenerator(strides=(8,), base_scale=4.0, scales=(1.0, 2.0), ratios=(1.0, 2.0))
    anchors = generator.grid_anchors([(3, 5)])[0]
    # A head output whose channel block a at (y, x) holds that anchor's box must flatten onto the anchors.
    head = anchors.view(3, 5, 4, 4).permute(2, 3, 0, 1).reshape(1, 16, 3, 5)
    assert torch.equal(flatten_levels([head], 4)[0], anchors)


def test_anchor_generator_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        AnchorGenerator(strides=(8,), base_scale=0.0, scales=(1.0,), ratios=(1.0,))


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)])
def test_box_coder_round_trip(stds):
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(200, 2, generator=generator) * 100
    reference = torch.cat([reference, reference + 5 + torch.rand(200, 2, generator=generator) * 50], dim=1).double()
    boxes = torch.rand(200, 2, generator=generator) * 100
    boxes = torch.cat([boxes, boxes + 5 + torch.rand(200, 2, generator=generator) * 50], dim=1).double()
    coder = DeltaBoxCoder(means=(0.1, -0.1, 0.0, 0.05), stds=stds)
    decoded = coder.decode(coder.encode(boxes, reference), reference)
    assert torch.allclose(decoded, boxes, atol=1e-9)


def test_box_coder_weights_are_inverse_stds_and_clamps():
    coder = DeltaBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[1.0, 2.0, 11.0, 22.0]])
    # dx = 1/10 -> 1.0 with weight 10; dy = 2/20 -> 1.0; sizes unchanged -> 0.
    assert torch.allclose(coder.encode(box, reference), torch.tensor([[1.0, 1.0, 0.0, 0.0]]), atol=1e-6)
    huge = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), reference)
    assert torch.allclose(huge[0, 2] - huge[0, 0], torch.tensor(10.0 * 1000 / 16), rtol=1e-5)
    # Zero-size targets (padding) give finite deltas.
    assert torch.isfinite(coder.encode(torch.zeros(1, 4), reference)).all()


def test_matcher_thresholds_low_quality_and_padding():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 4.5], [50, 50, 60, 60], [100, 100, 110, 110]])
    gt = torch.tensor([[[0.0, 0, 10, 10], [52, 52, 70, 70], [0, 0, 1, 1]]])
    valid = torch.tensor([[True, True, False]])
    iou = batched_iou(gt, anchors)
    match = IoUMatcher(0.5, 0.4, allow_low_quality=True)(iou, valid)
    # IoUs with gt 0: 1.0, 0.8, 0.45 (ignored), 0, 0; anchor 3 has IoU 64/424 ~ 0.15 with gt 1,
    # below 0.4, but it is gt 1's best anchor: a low-quality positive.
    assert match.positive.tolist() == [[True, True, False, True, False]]
    assert match.negative.tolist() == [[False, False, False, False, True]]
    assert match.gt_index[0, :2].tolist() == [0, 0] and int(match.gt_index[0, 3]) == 1
    strict = IoUMatcher(0.5, 0.4, allow_low_quality=False)(iou, valid)
    assert strict.positive.tolist() == [[True, True, False, False, False]]
    assert strict.negative.tolist() == [[False, False, False, True, True]]
    # An image without valid objects: every anchor is background.
    empty = IoUMatcher(0.5, 0.4, allow_low_quality=True)(iou, torch.zeros_like(valid))
    assert not empty.positive.any() and empty.negative.all()


def test_gather_gt_picks_per_box_values():
    values = torch.tensor([[[1.0, 1, 1, 1], [2, 2, 2, 2]]])
    picked = gather_gt(values, torch.tensor([[1, 0, 1]]))
    assert picked[..., 0].tolist() == [[2.0, 1.0, 2.0]]
    assert gather_gt(torch.tensor([[7, 9]]), torch.tensor([[1, 1, 0]])).tolist() == [[9, 9, 7]]


@pytest.mark.parametrize("num_positive", [0, 3, 40])
def test_fixed_shape_sampling_respects_budget_and_fraction(num_positive):
    torch.manual_seed(1)
    positive = torch.zeros(2, 100, dtype=torch.bool)
    positive[:, :num_positive] = True
    negative = ~positive
    negative[:, 90:] = False  # ignored boxes are never sampled
    sampled = sample_fixed(positive, negative, num_samples=32, positive_fraction=0.25)
    taken_pos = (sampled & positive).sum(dim=1)
    assert taken_pos.tolist() == [min(num_positive, 8)] * 2
    assert sampled.sum(dim=1).tolist() == [32, 32]
    assert not (sampled & ~(positive | negative)).any()
