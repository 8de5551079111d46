"""alwa_ext.box_iou (pairwise) against the definition and the brute-force eager reference, on
every device."""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers import reference
from alwa_ext.kinds import ALPHA_IOU_KINDS, BOX_FORMATS
from helpers.boxes import DTYPES, TOLERANCES, degenerate_pairs, random_boxes, to_format

# box_iou takes the kinds with a pairwise similarity: kinds.ALPHA_IOU_KINDS (iou, giou, diou, ciou).


def brute_force_iou(boxes1, boxes2):
    """Plain IoU, one pair at a time, straight from the definition (eps = 0)."""
    out = torch.zeros(len(boxes1), len(boxes2), dtype=torch.float64)
    for i, a in enumerate(boxes1.tolist()):
        for j, b in enumerate(boxes2.tolist()):
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            out[i, j] = inter / union
    return out


def test_iou_equals_definition(device):
    gen = torch.Generator().manual_seed(0)
    b1, b2 = random_boxes(17, generator=gen), random_boxes(23, generator=gen)
    ours = alwa_ext.box_iou(b1.to(device), b2.to(device), eps=0.0)
    torch.testing.assert_close(ours.cpu(), brute_force_iou(b1, b2), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(kind, box_format, dtype, device):
    gen = torch.Generator().manual_seed(1)
    b1 = to_format(random_boxes(31, generator=gen), box_format).to(dtype)
    b2 = to_format(random_boxes(45, generator=gen), box_format).to(dtype)
    ours = alwa_ext.box_iou(b1.to(device), b2.to(device), kind, box_format=box_format)
    theirs = reference.box_iou(b1, b2, kind, box_format=box_format)
    assert ours.shape == (31, 45) and ours.dtype == dtype and ours.device.type == device
    torch.testing.assert_close(ours.cpu(), theirs, **TOLERANCES[dtype])


@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_value_is_one_minus_loss(kind, device):
    gen = torch.Generator().manual_seed(2)
    b1, b2 = random_boxes(12, generator=gen, device=device), random_boxes(12, generator=gen, device=device)
    diagonal = alwa_ext.box_iou(b1, b2, kind).diagonal()
    torch.testing.assert_close(diagonal, 1 - alwa_ext.box_loss(b1, b2, kind, reduction="none"))


@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_gradients(kind, device):
    gen = torch.Generator().manual_seed(3)
    b1 = random_boxes(5, generator=gen, device=device).requires_grad_()
    b2 = random_boxes(4, generator=gen, device=device).requires_grad_()
    if kind != "ciou":  # CIoU's alpha is a constant for the gradient: finite differences disagree
        assert torch.autograd.gradcheck(lambda a, b: alwa_ext.box_iou(a, b, kind), (b1, b2))
    upstream = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad(alwa_ext.box_iou(b1, b2, kind), (b1, b2), upstream.to(device))
    c1, c2 = b1.detach().cpu().requires_grad_(), b2.detach().cpu().requires_grad_()
    theirs = torch.autograd.grad(reference.box_iou(c1, c2, kind), (c1, c2), upstream)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


def is_proper(boxes):
    """Boxes whose corners are in order (x1 <= x2, y1 <= y2)."""
    return (boxes[:, 2:] >= boxes[:, :2]).all(-1)


@pytest.mark.parametrize("kind", ALPHA_IOU_KINDS)
def test_degenerate_and_empty(kind, device):
    pred, target = degenerate_pairs(torch.float32, device)
    out = alwa_ext.box_iou(pred, target, kind)
    assert torch.isfinite(out).all()
    # Inverted boxes can have centres further apart than their enclosing diagonal; between
    # proper boxes every kind lies in [-2, 1].
    proper = out[is_proper(pred)][:, is_proper(target)]
    assert proper.numel() > 0 and ((proper >= -2.0) & (proper <= 1.0)).all()
    assert alwa_ext.box_iou(pred[:0], target, kind).shape == (0, len(target))
    assert alwa_ext.box_iou(pred, target[:0], kind).shape == (len(pred), 0)


def test_non_contiguous_and_deterministic(device):
    gen = torch.Generator().manual_seed(4)
    b1 = random_boxes(300, generator=gen, device=device).t().contiguous().t()
    b2 = random_boxes(500, generator=gen, device=device)[::2]
    assert not b1.is_contiguous() and not b2.is_contiguous()
    first = alwa_ext.box_iou(b1, b2, "ciou")
    assert torch.equal(first, alwa_ext.box_iou(b1, b2, "ciou"))
    torch.testing.assert_close(first.cpu(), reference.box_iou(b1.cpu(), b2.cpu(), "ciou"), rtol=1e-10, atol=1e-12)
