"""alwa_ext.box_iou (pairwise) against a brute-force reference."""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from alwa_ext import reference
from conftest import BOX_FORMATS, DTYPES, IOU_KINDS, TOLERANCES, degenerate_pairs, random_boxes, to_format


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


def test_iou_equals_definition():
    gen = torch.Generator().manual_seed(0)
    b1, b2 = random_boxes(17, generator=gen), random_boxes(23, generator=gen)
    torch.testing.assert_close(alwa_ext.box_iou(b1, b2, eps=0.0), brute_force_iou(b1, b2), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", IOU_KINDS)
@pytest.mark.parametrize("box_format", BOX_FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(kind, box_format, dtype):
    gen = torch.Generator().manual_seed(1)
    b1 = to_format(random_boxes(31, generator=gen), box_format).to(dtype)
    b2 = to_format(random_boxes(45, generator=gen), box_format).to(dtype)
    ours = alwa_ext.box_iou(b1, b2, kind, box_format=box_format)
    theirs = reference.box_iou(b1, b2, kind, box_format=box_format)
    assert ours.shape == (31, 45) and ours.dtype == dtype
    torch.testing.assert_close(ours, theirs, **TOLERANCES[dtype])


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_value_is_one_minus_loss(kind):
    gen = torch.Generator().manual_seed(2)
    b1, b2 = random_boxes(12, generator=gen), random_boxes(12, generator=gen)
    diagonal = alwa_ext.box_iou(b1, b2, kind).diagonal()
    torch.testing.assert_close(diagonal, 1 - alwa_ext.box_loss(b1, b2, kind, reduction="none"))


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_gradients(kind):
    gen = torch.Generator().manual_seed(3)
    b1 = random_boxes(5, generator=gen).requires_grad_()
    b2 = random_boxes(4, generator=gen).requires_grad_()
    if kind != "ciou":  # CIoU's alpha is a constant for the gradient: finite differences disagree
        assert torch.autograd.gradcheck(lambda a, b: alwa_ext.box_iou(a, b, kind), (b1, b2))
    upstream = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad(alwa_ext.box_iou(b1, b2, kind), (b1, b2), upstream)
    theirs = torch.autograd.grad(reference.box_iou(b1, b2, kind), (b1, b2), upstream)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_degenerate_and_empty(kind):
    pred, target = degenerate_pairs(torch.float32)
    out = alwa_ext.box_iou(pred, target, kind)
    assert torch.isfinite(out).all()
    # Inverted boxes (rows 8, 9) can have centres further apart than their enclosing diagonal;
    # between proper boxes every kind lies in [-2, 1].
    proper = torch.ones(len(pred), dtype=torch.bool)
    proper[8:10] = False
    assert ((out[proper][:, proper] >= -2.0) & (out[proper][:, proper] <= 1.0)).all()
    assert alwa_ext.box_iou(pred[:0], target, kind).shape == (0, len(target))
    assert alwa_ext.box_iou(pred, target[:0], kind).shape == (len(pred), 0)


def test_non_contiguous_and_deterministic():
    gen = torch.Generator().manual_seed(4)
    b1 = random_boxes(300, generator=gen).t().contiguous().t()
    b2 = random_boxes(500, generator=gen)[::2]
    first = alwa_ext.box_iou(b1, b2, "ciou")
    assert torch.equal(first, alwa_ext.box_iou(b1, b2, "ciou"))
    torch.testing.assert_close(first, reference.box_iou(b1, b2, "ciou"), rtol=1e-10, atol=1e-12)


def test_bad_arguments():
    b = torch.rand(3, 4)
    with pytest.raises(ValueError, match="kind: expected one of"):
        alwa_ext.box_iou(b, b, "l1")
    with pytest.raises(ValueError, match=r"boxes1: expected shape \(M, 4\)"):
        alwa_ext.box_iou(b[None], b)
    with pytest.raises(ValueError, match="boxes2: expected the dtype of boxes1"):
        alwa_ext.box_iou(b, b.double())
    with pytest.raises(ValueError, match="eps: expected"):
        alwa_ext.box_iou(b, b, eps=-1.0)


def test_opcheck():
    gen = torch.Generator().manual_seed(5)
    for m, n in [(6, 7), (0, 3)]:
        b1 = random_boxes(m, generator=gen).requires_grad_()
        b2 = random_boxes(n, generator=gen).requires_grad_()
        torch.library.opcheck(torch.ops.alwa.box_iou.default, (b1, b2, "diou", "xyxy", 1e-7))
