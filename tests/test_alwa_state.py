"""ALWA's departures from the published code that keep its state meaningful: a window without a
usable statistic leaves λcls alone (the published rule would zero it for good), and
load_state_dict refuses what is not a state of this module."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alwa_ext import ALWA
from helpers.reference import alwa_published


def feed(alwa, cls_losses, reg_losses, device):
    lambdas = []
    for c, r in zip(cls_losses, reg_losses):
        alwa(torch.tensor(c, dtype=torch.float64, device=device), torch.tensor(r, dtype=torch.float64, device=device))
        lambdas.append(alwa.weights[0].item())
    return np.array(lambdas)


@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_a_window_without_regression_loss_does_not_zero_lambda(mode, device):
    # Windows of 5: one of images with objects, one without (regression loss 0 throughout),
    # then objects again.
    rng = np.random.default_rng(0)
    cls = rng.normal(2.0, 0.4, 15)
    # (the third window's regression spread is small, so the rule fires there again)
    reg = np.concatenate([rng.normal(0.5, 0.1, 5), np.zeros(5), rng.normal(0.5, 0.01, 5)])
    alwa = ALWA(mode=mode, interval=5).to(device)
    lambdas = feed(alwa, cls, reg, device)
    _, published = alwa_published(cls, reg, mode=mode, interval=5)
    # The published rule: λcls = reg / cls = 0 after the empty window, and 0 ever after (the
    # weighted classification loss is then 0, so no later window can fire).
    assert published[9, 0] == 0 and published[-1, 0] == 0
    # Ours: the first window's update, then λcls kept through the empty window (counted), then
    # updated again from the third window.
    assert lambdas[4] == pytest.approx(published[4, 0], rel=1e-12) and 0 < lambdas[4] < 1
    assert lambdas[9] == lambdas[4]
    assert alwa.held.item() == 1 and alwa.num_updates.item() == 3
    assert lambdas[14] != lambdas[9] and lambdas[14] > 0


def test_a_window_of_skipped_iterations_is_held(device):
    alwa = ALWA(interval=2).to(device)
    feed(alwa, [1.0, 2.0, math.nan, math.nan, 1.0, 3.0], [0.1, 0.2, 0.1, 0.1, 0.2, 0.1], device)
    # (non-finite iterations are not recorded: the middle values never fill a window)
    assert alwa.skipped.item() == 2 and alwa.held.item() == 0


# --------------------------------------------------------------------------- load_state_dict


def saved(**kwargs):
    alwa = ALWA(interval=5, **kwargs)
    feed(alwa, [2.0, 1.5, 1.8], [0.4, 0.5, 0.45], "cpu")
    return alwa.state_dict()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s["weights"].fill_(math.nan), "weights: expected finite numbers > 0"),
        (lambda s: s["weights"].__setitem__(0, -0.5), "weights: expected finite numbers > 0"),
        (lambda s: s["step"].fill_(-1), "step: expected a count >= 0"),
        (lambda s: s["held"].fill_(-2), "held: expected a count >= 0"),
        (lambda s: s["window"].__setitem__((0, 0), -1.0), "window: expected equal whole counts"),
        (lambda s: s["window"].__setitem__((1, 0), 2.5), "window: expected equal whole counts"),
        (lambda s: s["window"].__setitem__((0, 0), 5.0), "window: expected equal whole counts"),
        (lambda s: s["window"].__setitem__((0, 2), math.inf), "window: expected finite numbers"),
        (lambda s: s.__setitem__("weights", s["weights"].float()), "weights: expected a torch.float64 tensor"),
        (lambda s: s.__setitem__("_extra_state", None), "_extra_state: expected a dict"),
        (lambda s: s["_extra_state"].__setitem__("calls_in_window", -3), "calls_in_window"),
    ],
)
def test_load_refuses_an_invalid_state(change, match):
    state = saved()
    change(state)
    alwa = ALWA(interval=5)
    before = {name: buffer.clone() for name, buffer in alwa.named_buffers()}
    with pytest.raises(RuntimeError, match=match):
        alwa.load_state_dict(state)
    for name, buffer in alwa.named_buffers():  # nothing was half loaded
        assert torch.equal(buffer, before[name]), name


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(interval=7), "interval=5"), (dict(interval=5, mode="alwa1"), "mode='alwa2'"),
     (dict(interval=5, update="stable"), "update='paper'")],
)
def test_load_refuses_a_state_of_another_configuration(kwargs, match):
    with pytest.raises(RuntimeError, match=f"saved with {match}"):
        ALWA(**kwargs).load_state_dict(saved())


def test_a_state_from_before_held_existed_still_loads():
    state = saved()
    del state["held"]
    state["_extra_state"] = {"calls_in_window": 0}  # the older extra state held only this
    alwa = ALWA(interval=5)
    alwa.load_state_dict(state)
    assert alwa.held.item() == 0 and alwa.step.item() == 3
