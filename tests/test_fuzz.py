"""Property tests on arbitrary (often degenerate) boxes, on every device."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("hypothesis")  # a test dependency (make test installs it); GPU hosts may lack it
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import alwa_ext  # noqa: E402
from helpers import reference  # noqa: E402
from alwa_ext.kinds import BOX_FORMATS, IOU_KINDS, LOSS_KINDS  # noqa: E402
from helpers.boxes import DTYPES  # noqa: E402
from helpers.devices import DEVICES, running_on  # noqa: E402

# Small integer coordinates make ties, touching edges, zero sizes and inversions common.
coordinate = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e4, 1e4, allow_nan=False, width=32))
box = st.lists(coordinate, min_size=4, max_size=4)
boxes = st.lists(st.tuples(box, box), min_size=1, max_size=12)
dtypes = st.sampled_from(DTYPES)
# An explicit parameter, not the conftest fixture: hypothesis refuses function-scoped fixtures.
on_every_device = pytest.mark.parametrize("device", DEVICES)


@on_every_device
@settings(max_examples=int(os.environ.get("ALWA_FUZZ_EXAMPLES", "150")), deadline=None)
@given(pairs=boxes, loss=st.sampled_from(LOSS_KINDS), dtype=dtypes, fmt=st.sampled_from(BOX_FORMATS))
def test_losses_and_gradients_are_finite(device, pairs, loss, dtype, fmt):
    with running_on(device) as device:
        check_finite(device, pairs, loss, dtype, fmt)


def check_finite(device, pairs, loss, dtype, fmt):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float64).to(dtype=dtype, device=device).requires_grad_()
    target = torch.tensor([t for _, t in pairs], dtype=torch.float64).to(dtype=dtype, device=device).requires_grad_()
    if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
        return  # float16 cannot hold every coordinate drawn
    out = alwa_ext.box_loss(pred, target, loss, reduction="none", box_format=fmt)
    grad_pred, grad_target = torch.autograd.grad(out.sum(), (pred, target))
    assert torch.isfinite(out).all()
    assert torch.isfinite(grad_pred).all() and torch.isfinite(grad_target).all()


@on_every_device
@settings(max_examples=int(os.environ.get("ALWA_FUZZ_EXAMPLES", "150")), deadline=None)
@given(pairs=boxes, loss=st.sampled_from(IOU_KINDS))
def test_float64_values_match_reference_everywhere(device, pairs, loss):
    with running_on(device) as device:
        check_matches_reference(device, pairs, loss)


def check_matches_reference(device, pairs, loss):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float64, device=device)
    target = torch.tensor([t for _, t in pairs], dtype=torch.float64, device=device)
    ours = alwa_ext.box_loss(pred, target, loss, reduction="none").cpu()
    theirs = reference.box_loss(pred.cpu(), target.cpu(), loss, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    # Symmetric in its arguments except for CIoU's aspect term.
    if loss != "ciou":
        swapped = alwa_ext.box_loss(target, pred, loss, reduction="none").cpu()
        torch.testing.assert_close(ours, swapped, rtol=1e-9, atol=1e-9)
