"""Property tests on arbitrary (often degenerate) boxes."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("hypothesis")  # a test dependency (make test installs it); GPU hosts may lack it
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import alwa_ext  # noqa: E402
from alwa_ext import reference  # noqa: E402
from conftest import IOU_KINDS, LOSS_KINDS  # noqa: E402

# Small integer coordinates make ties, touching edges, zero sizes and inversions common.
coordinate = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e4, 1e4, allow_nan=False, width=32))
box = st.lists(coordinate, min_size=4, max_size=4)
boxes = st.lists(st.tuples(box, box), min_size=1, max_size=12)
dtypes = st.sampled_from([torch.float64, torch.float32, torch.float16, torch.bfloat16])


@settings(max_examples=int(os.environ.get("ALWA_FUZZ_EXAMPLES", "150")), deadline=None)
@given(pairs=boxes, loss=st.sampled_from(LOSS_KINDS), dtype=dtypes, fmt=st.sampled_from(["xyxy", "cxcywh"]))
def test_losses_and_gradients_are_finite(pairs, loss, dtype, fmt):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float64).to(dtype).requires_grad_()
    target = torch.tensor([t for _, t in pairs], dtype=torch.float64).to(dtype).requires_grad_()
    if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
        return  # float16 cannot hold every coordinate drawn
    out = alwa_ext.box_loss(pred, target, loss, reduction="none", box_format=fmt)
    grad_pred, grad_target = torch.autograd.grad(out.sum(), (pred, target))
    assert torch.isfinite(out).all()
    assert torch.isfinite(grad_pred).all() and torch.isfinite(grad_target).all()


@settings(max_examples=int(os.environ.get("ALWA_FUZZ_EXAMPLES", "150")), deadline=None)
@given(pairs=boxes, loss=st.sampled_from(IOU_KINDS))
def test_float64_values_match_reference_everywhere(pairs, loss):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float64)
    target = torch.tensor([t for _, t in pairs], dtype=torch.float64)
    ours = alwa_ext.box_loss(pred, target, loss, reduction="none")
    theirs = reference.box_loss(pred, target, loss, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    # Symmetric in its arguments except for CIoU's aspect term.
    if loss != "ciou":
        swapped = alwa_ext.box_loss(target, pred, loss, reduction="none")
        torch.testing.assert_close(ours, swapped, rtol=1e-9, atol=1e-9)
