"""The pure-PyTorch RoIAlign against a per-sample transcription of torchvision's CPU kernel."""

import math

import pytest
import torch

from alwa_det.faster_rcnn import roi_align

from helpers.harness import single_thread  # noqa: F401  (single_thread: an autouse fixture)


def bilinear(feature, y, x):
    """torchvision's bilinear_interpolate for one channel map."""
    height, width = feature.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feature[y_low, x_low] + hy * lx * feature[y_low, x_high]
            + ly * hx * feature[y_high, x_low] + ly * lx * feature[y_high, x_high])


def reference_roi_align(feature, roi, stride, output_size, sampling_ratio):
    scale = 1.0 / stride
    start_x, start_y = roi[0] * scale - 0.5, roi[1] * scale - 0.5
    bin_w = (roi[2] - roi[0]) * scale / output_size
    bin_h = (roi[3] - roi[1]) * scale / output_size
    out = torch.zeros(feature.shape[0], output_size, output_size, dtype=feature.dtype)
    for c in range(feature.shape[0]):
        for ph in range(output_size):
            for pw in range(output_size):
                total = 0.0
                for iy in range(sampling_ratio):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                    for ix in range(sampling_ratio):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                        total += float(bilinear(feature[c], y, x))
                out[c, ph, pw] = total / sampling_ratio**2
    return out


def test_roi_align_matches_reference_on_each_level():
    torch.manual_seed(0)
    strides = [4, 8]
    features = [torch.randn(2, 3, 12, 10, dtype=torch.float64), torch.randn(2, 3, 6, 5, dtype=torch.float64)]
    # finest_scale 16: RoIs under 32 px go to level 0, larger ones to level 1.
    rois = torch.tensor([
        [[2.0, 3.0, 20.0, 17.0], [0.0, 0.0, 40.0, 48.0], [-6.0, -5.0, 10.0, 12.0]],
        [[30.0, 40.0, 39.5, 47.0], [5.0, 9.0, 41.0, 44.0], [35.0, 2.0, 70.0, 60.0]],  # the last one runs off the map
    ], dtype=torch.float64)
    pooled = roi_align(features, strides, rois, output_size=3, sampling_ratio=2, finest_scale=16.0)
    assert pooled.shape == (2, 3, 3, 3, 3)
    for b in range(2):
        for r in range(3):
            x1, y1, x2, y2 = rois[b, r].tolist()
            level = min(max(math.floor(math.log2(math.sqrt((x2 - x1) * (y2 - y1)) / 16.0 + 1e-6)), 0), 1)
            expected = reference_roi_align(features[level][b], rois[b, r].tolist(), strides[level], 3, 2)
            assert torch.allclose(pooled[b, r], expected, atol=1e-12), (b, r, level)


def test_roi_align_gradients_reach_the_features():
    features = [torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)]
    rois = torch.tensor([[[4.0, 4.0, 20.0, 24.0]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align([f], [4], rois, 2, 2, 56.0), (features[0],))
