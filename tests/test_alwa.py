"""ALWA (alwa_ext.ALWA, torch.ops.alwa.alwa_step / alwa_pooled_update), on every device.

The reference is tests/helpers/reference.py.alwa_published, a NumPy transcription of the paper's
published algorithm; trajectories must match it to 1e-9 in float64. (Several ranks:
test_alwa_distributed.py; opcheck and torch.compile: test_compile_and_opcheck.py; CUDA
graphs, sync-debug mode and CPU-vs-CUDA identity: test_cuda_kernels.py.)
"""
from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch

from alwa_ext import ALWA
from alwa_ext.kinds import ALWA_MODES, ALWA_STATISTICS, ALWA_UPDATES
from helpers.reference import alwa_published, pooled_windows_rule
from helpers.alwa import feed, loss_sequences

LOSS_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


# --------------------------------------------------------------------------- the published algorithm


@pytest.mark.parametrize("statistic", ALWA_STATISTICS)
@pytest.mark.parametrize("update", ALWA_UPDATES)
@pytest.mark.parametrize("kind", ["decaying", "stationary", "reg_dominant"])
@pytest.mark.parametrize("interval", [2, 7, 100])
@pytest.mark.parametrize("mode", ALWA_MODES)
def test_matches_published_algorithm(mode, interval, kind, update, statistic, device):
    if statistic == "detrended" and interval == 2:
        pytest.skip("a detrended window needs 3 values")
    n = 1000 if interval == 100 else 150
    cls, reg = loss_sequences(kind, n, seed=interval)
    alwa = ALWA(mode=mode, interval=interval, update=update, cls_weight=1.0, reg_weight=0.8, statistic=statistic)
    _, after, returned = feed(alwa, cls, reg, device=device)
    ref_applied, ref_after = alwa_published(cls, reg, mode=mode, interval=interval, reg_weight=0.8, update=update,
                                            statistic=statistic)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    # The returned losses are the inputs times the weights in force before the iteration's update.
    np.testing.assert_allclose(returned, ref_applied * np.stack([cls, reg], 1), rtol=1e-9, atol=0)
    assert alwa.num_updates.item() == n // interval
    assert alwa.step.item() == n and alwa.skipped.item() == 0
    if kind == "reg_dominant":
        if interval >= 7:  # the rule never fires: cls statistic below reg's
            assert (after[:, 0] == 1.0).all()  # (windows of 2 are too noisy to say)
    elif not (statistic == "detrended" and kind == "decaying" and mode == "alwa2" and interval == 100):
        # (about its trend, a decaying cls's noise is below reg's in windows of 100)
        assert len(np.unique(ref_after[:, 0])) > 1, "the sequence must make the rule fire"


@pytest.mark.parametrize("mode", ALWA_MODES)
def test_large_mean_small_spread_is_numerically_sound(mode, device):
    """Means of 1e7 with spreads of 1e-2/1e-3. "stable" records the losses unchanged, so each
    update depends on one window's statistics only. (With "paper" the products λ·x are
    rounded to 1e-10 against a spread of 1e-3: one ulp of λ moves the next std by ~1e-8 in
    any implementation, so no 1e-9 comparison of chained updates is meaningful there.)"""
    cls, reg = loss_sequences("large_mean", 60, seed=3)
    _, after, _ = feed(ALWA(mode=mode, interval=20, update="stable"), cls, reg, device=device)
    _, ref_after = alwa_published(cls, reg, mode=mode, interval=20, update="stable")
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    assert ref_after[-1, 0] != 1.0

    # The test has teeth: the one-pass textbook variance (Σx² - n·mean²) / (n - 1) is far off.
    def naive_std(values):
        values = np.asarray(values)
        return math.sqrt(max((np.sum(values**2) - len(values) * np.mean(values) ** 2) / (len(values) - 1), 0.0))

    for values in (cls[:20], reg[:20]):
        assert abs(naive_std(values) - np.std(values, ddof=1)) > 0.1 * np.std(values, ddof=1)


def test_update_is_an_absolute_assignment_and_reg_weight_is_fixed(device):
    # interval 2, std of [a, b] is |a - b| / sqrt(2): pick the numbers by hand.
    alwa = ALWA(mode="alwa2", interval=2, cls_weight=0.5, reg_weight=3.0)
    f64 = dict(dtype=torch.float64, device=device)
    alwa(torch.tensor(1.0, **f64), torch.tensor(1.0, **f64))
    alwa(torch.tensor(9.0, **f64), torch.tensor(2.0, **f64))
    # weighted cls window [0.5, 4.5] -> std 4/sqrt2; reg [3, 6] -> std 3/sqrt2; λcls = 3/4.
    assert alwa.weights.tolist() == pytest.approx([0.75, 3.0], rel=1e-15)
    assert alwa.window.abs().sum().item() == 0  # both windows emptied


def test_returned_losses_use_the_weights_before_the_update_and_are_differentiable(device):
    alwa = ALWA(mode="alwa2", interval=2)
    alwa(torch.tensor(1.0, device=device), torch.tensor(1.0, device=device))
    loss_cls = torch.tensor(9.0, device=device, requires_grad=True)
    loss_reg = torch.tensor(2.0, device=device, requires_grad=True)
    weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)  # closes the window: λcls 1 -> 1/8
    assert alwa.weights[0].item() == pytest.approx(1 / 8)
    assert weighted_cls.item() == 9.0 and weighted_reg.item() == 2.0
    (weighted_cls * 2 + weighted_reg * 3).backward()
    assert loss_cls.grad.item() == 2.0 and loss_reg.grad.item() == 3.0
    loss_cls = torch.tensor(4.0, device=device, requires_grad=True)
    weighted_cls, _ = alwa(loss_cls, torch.tensor(1.0, device=device))
    weighted_cls.backward()
    assert weighted_cls.item() == 0.5 and loss_cls.grad.item() == 1 / 8
    assert weighted_cls.dim() == 0


@pytest.mark.parametrize("dtype", LOSS_DTYPES)
def test_loss_dtypes_keep_float64_statistics(dtype, device):
    cls, reg = loss_sequences("decaying", 120, seed=5)
    alwa = ALWA(mode="alwa1", interval=7).to(device)
    _, after, _ = feed(alwa, cls, reg, device=device, dtype=dtype)
    assert alwa.weights.dtype == torch.float64 and alwa.window.dtype == torch.float64
    # The window records double(loss) * λ: the reference fed the dtype-rounded losses agrees
    # to float64 precision.
    rounded_cls = torch.tensor(cls).to(dtype).double().numpy()
    rounded_reg = torch.tensor(reg).to(dtype).double().numpy()
    _, ref_after = alwa_published(rounded_cls, rounded_reg, mode="alwa1", interval=7)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    weighted_cls, weighted_reg = alwa(torch.tensor(1.0, dtype=dtype, device=device), torch.tensor(1.0, dtype=dtype, device=device))
    assert weighted_cls.dtype == dtype and weighted_reg.dtype == dtype
    # Half types get λ rounded through float32, as at::opmath_type does on both backends.
    through = torch.float64 if dtype == torch.float64 else torch.float32
    expected = torch.tensor(alwa.weights[0].item(), dtype=through).to(dtype)
    assert weighted_cls.cpu() == expected


def test_mixed_loss_dtypes(device):
    alwa = ALWA(interval=2, cls_weight=0.5)
    weighted_cls, weighted_reg = alwa(torch.tensor(2.0, dtype=torch.bfloat16, device=device),
                                      torch.tensor(2.0, dtype=torch.float64, device=device))
    assert weighted_cls.dtype == torch.bfloat16 and weighted_reg.dtype == torch.float64
    assert weighted_cls.item() == 1.0 and weighted_reg.item() == 2.0


@pytest.mark.parametrize("statistic", ALWA_STATISTICS)
@pytest.mark.parametrize("mode", ALWA_MODES)
def test_pooled_update_equals_the_statistics_of_the_concatenated_windows(mode, statistic, device):
    rng = np.random.default_rng(0)
    # Four ranks, one with an empty window, one with a single value: all merge exactly. A falling
    # trend in cls, so the detrended spread differs from the raw one.
    rank_values = [(rng.normal(2, 0.5, 9) - 0.2 * np.arange(9), rng.normal(0.5, 0.1, 9)), (np.array([]), np.array([])),
                   (np.array([3.0]), np.array([0.2])), (rng.normal(2, 0.5, 5) - 0.3 * np.arange(5), rng.normal(0.5, 0.1, 5))]
    windows = []
    for cls_values, reg_values in rank_values:
        alwa = ALWA(mode=mode, interval=10_000, statistic=statistic)
        feed(alwa, cls_values, reg_values)
        windows.append(alwa.window)
    state = ALWA(mode=mode, statistic=statistic).to(device)
    state.window.fill_(7.0)
    torch.ops.alwa.alwa_pooled_update(torch.stack(windows).to(device), state.weights, state.window, state.num_updates, state.held, mode,
                                      statistic)
    ref_after = pooled_windows_rule([v[0] for v in rank_values], [v[1] for v in rank_values], mode=mode,
                                    statistic=statistic)
    assert ref_after[0] != pytest.approx(1.0), "the rule must fire"
    assert state.weights.cpu().numpy() == pytest.approx(ref_after, rel=1e-12)
    assert state.window.abs().sum().item() == 0 and state.num_updates.item() == 1


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("update", ALWA_UPDATES)
def test_resume_mid_window_equals_uninterrupted_run(update, device):
    cls, reg = loss_sequences("decaying", 260, seed=11)
    kwargs = dict(mode="alwa1", interval=100, update=update)
    uninterrupted = ALWA(**kwargs)
    _, after_full, returned_full = feed(uninterrupted, cls, reg, device=device)

    first = ALWA(**kwargs)
    feed(first, cls[:137], reg[:137], device=device)  # 37 values into the second window
    assert first.window[0, 0].item() == 37
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = ALWA(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.to(device)
    _, after_resumed, returned_resumed = feed(resumed, cls[137:], reg[137:], device=device)
    np.testing.assert_array_equal(after_resumed, after_full[137:])
    np.testing.assert_array_equal(returned_resumed, returned_full[137:])
    for name in ("weights", "window", "step", "skipped", "num_updates", "held"):
        assert torch.equal(getattr(resumed, name), getattr(uninterrupted, name)), name


def test_state_dict_holds_the_whole_state():
    alwa = ALWA(interval=5)
    assert set(alwa.state_dict()) == {"weights", "window", "step", "skipped", "num_updates", "held", "_extra_state"}
    clone = copy.deepcopy(alwa)
    feed(clone, [1.0, 2.0], [0.5, 0.7])
    assert alwa.step.item() == 0 and clone.step.item() == 2


def test_module_dtype_casts_leave_the_statistics_in_float64():
    alwa = ALWA(cls_weight=0.3)
    feed(alwa, [1.0, 2.0, 4.0], [0.5, 0.7, 0.1])
    before = {name: buffer.clone() for name, buffer in alwa.named_buffers()}
    alwa.half()
    alwa.to(torch.bfloat16)
    alwa.float()
    for name, buffer in alwa.named_buffers():
        assert buffer.dtype == before[name].dtype and torch.equal(buffer, before[name]), name


# --------------------------------------------------------------------------- non-finite losses


@pytest.mark.parametrize("mode", ALWA_MODES)
def test_nonfinite_losses_are_skipped_and_counted(mode, device):
    cls, reg = loss_sequences("decaying", 200, seed=2)
    cls[[3, 50, 51, 120]] = [np.nan, np.inf, -np.inf, np.nan]
    reg[[4, 51, 199]] = [np.inf, np.nan, -np.inf]
    alwa = ALWA(mode=mode, interval=7)
    _, after, returned = feed(alwa, cls, reg, device=device)
    _, ref_after = alwa_published(cls, reg, mode=mode, interval=7)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    assert alwa.skipped.item() == 6 and alwa.step.item() == 200
    assert alwa.num_updates.item() == (200 - 6) // 7
    assert np.isfinite(after).all()
    assert np.isnan(returned[3, 0])  # the loss itself is returned as it is (weighted)


def test_weights_never_become_nonfinite(device):
    # A huge λcls overflows the weighted value: not recorded. Zero-spread windows: no update.
    alwa = ALWA(interval=2, cls_weight=1e308)
    feed(alwa, [10.0, 20.0, 30.0], [1.0, 2.0, 3.0], device=device)
    assert alwa.skipped.item() == 3 and torch.isfinite(alwa.weights).all()
    alwa = ALWA(interval=2)
    feed(alwa, [1.0, 1.0, np.nan, np.inf], [1.0, 1.0, 1.0, 1.0], device=device)
    assert alwa.weights.tolist() == [1.0, 1.0]
    # Only non-finite losses for whole windows: the window never fills, nothing changes.
    alwa = ALWA(interval=2)
    feed(alwa, [np.nan] * 6, [1.0] * 6, device=device)
    assert alwa.weights.tolist() == [1.0, 1.0] and alwa.num_updates.item() == 0


# --------------------------------------------------------------------------- "paper" vs "stable"


def test_paper_rule_oscillates_and_stable_rule_converges_on_stationary_losses(device):
    """Stationary i.i.d. losses: cls ~ N(2, 0.4²), reg ~ N(0.5, 0.1²), so with ALWA_2 the
    true ratio of the standard deviations is ρ = r/c = 0.25. We compare λcls right after each
    of 60 updates (windows of C = 400), for both rules, and check both against the NumPy
    transcription to 1e-9.

    - "paper": the recorded cls values already contain λcls, so a firing update gives
      λ' = r / (λ·c) ≈ ρ / λ. From λ = 1 it jumps to ≈ ρ, then back to ≈ 1, then the pair
      (λ, ρ/λ) keeps alternating; nothing pulls it to one value (the amplitude wanders with
      the sampling noise). Checked: the first updates flip ρ -> near 1 -> near ρ, the
      consecutive changes alternate in sign, and they stay large (median |Δλ| > 0.1).
    - "stable": every post-update λcls is the sample ratio r/c of one window: all within 0.05
      of ρ (the ratio's sampling error over 400 values is about 0.01), consecutive changes
      below 0.06, and the mean of the second half within 0.01 of ρ.
    """
    interval, windows = 400, 60
    cls, reg = loss_sequences("stationary", interval * windows, seed=7)
    ratio = 0.1 / 0.4
    per_window = {}
    for update in ALWA_UPDATES:
        alwa = ALWA(mode="alwa2", interval=interval, update=update)
        _, after, _ = feed(alwa, cls, reg, device=device)
        per_window[update] = after[interval - 1 :: interval, 0]
        _, ref_after = alwa_published(cls, reg, mode="alwa2", interval=interval, update=update)
        np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    paper, stable = per_window["paper"], per_window["stable"]
    assert len(paper) == len(stable) == windows

    assert abs(paper[0] - ratio) < 0.05 and paper[1] > 0.8 and abs(paper[2] - ratio) < 0.1, paper[:3]
    paper_steps = np.diff(paper)
    fired = paper_steps != 0
    alternating = np.sign(paper_steps[1:]) * np.sign(paper_steps[:-1]) < 0
    assert fired.mean() > 0.8 and alternating.mean() > 0.8, paper
    assert np.median(np.abs(paper_steps)) > 0.1, paper

    assert np.abs(stable - ratio).max() < 0.05, stable
    assert np.abs(np.diff(stable)).max() < 0.06, stable
    assert abs(stable[windows // 2 :].mean() - ratio) < 0.01, stable


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="alwa3"), "mode"),
        (dict(update="ema"), "update"),
        (dict(interval=1), "interval"),
        (dict(interval=0), "interval"),
        (dict(interval=2.0), "interval"),
        (dict(interval=True), "interval"),
        (dict(cls_weight=0.0), "cls_weight"),
        (dict(cls_weight=-1.0), "cls_weight"),
        (dict(cls_weight=math.inf), "cls_weight"),
        (dict(reg_weight=math.nan), "reg_weight"),
        (dict(reg_weight="1"), "reg_weight"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ALWA(**kwargs)


@pytest.mark.parametrize(
    "loss_cls, loss_reg, match",
    [
        (torch.ones(1), torch.tensor(1.0), "loss_cls.*0-dim"),
        (torch.tensor(1.0), torch.ones(2, 2), "loss_reg.*0-dim"),
        (torch.tensor(1), torch.tensor(1.0), "loss_cls.*float"),
        (torch.tensor(1.0), torch.tensor(True), "loss_reg.*float"),
        (1.0, torch.tensor(1.0), "loss_cls.*Tensor"),
        (torch.tensor(1.0, dtype=torch.complex64), torch.tensor(1.0), "loss_cls.*float"),
    ],
)
def test_bad_losses_raise(loss_cls, loss_reg, match):
    alwa = ALWA()
    with pytest.raises(ValueError, match=match):
        alwa(loss_cls, loss_reg)
    assert alwa.step.item() == 0


def test_direct_op_calls_are_checked():
    alwa = ALWA()
    one = torch.tensor(1.0)
    args = [alwa.weights, alwa.window, alwa.step, alwa.skipped, alwa.num_updates, alwa.held]
    with pytest.raises(ValueError, match="interval"):
        torch.ops.alwa.alwa_step(one, one, *args, 1, "alwa2", "paper", "raw")
    with pytest.raises(ValueError, match="mode"):
        torch.ops.alwa.alwa_step(one, one, *args, 2, "alwa9", "paper", "raw")
    with pytest.raises(ValueError, match="statistic"):
        torch.ops.alwa.alwa_step(one, one, *args, 2, "alwa2", "paper", "trend")
    with pytest.raises(ValueError, match="weights"):
        torch.ops.alwa.alwa_step(one, one, alwa.weights.float(), *args[1:], 2, "alwa2", "paper", "raw")
    with pytest.raises(ValueError, match="window"):
        torch.ops.alwa.alwa_step(one, one, args[0], torch.zeros(3, 2, dtype=torch.float64), *args[2:], 2, "alwa2", "paper", "raw")
    with pytest.raises(ValueError, match="rank_windows"):
        torch.ops.alwa.alwa_pooled_update(torch.zeros(2, 4, dtype=torch.float64), alwa.weights, alwa.window, alwa.num_updates, alwa.held, "alwa2", "raw")
    assert alwa.step.item() == 0


# --------------------------------------------------------------------------- the detrended statistic


def test_detrended_statistic_sees_the_noise_not_the_trend(device):
    """A classification loss falling steadily through each window, with the same noise as the
    regression loss: the raw std is mostly the fall, and sets λcls far below 1; the detrended
    std is the noise, and keeps λcls near 1."""
    rng = np.random.default_rng(3)
    interval, windows = 50, 8
    steps = np.arange(interval * windows, dtype=np.float64)
    cls = 4.0 - 0.008 * steps + 0.05 * rng.standard_normal(steps.shape)
    reg = 0.5 + 0.05 * rng.standard_normal(steps.shape)
    _, raw, _ = feed(ALWA(mode="alwa2", interval=interval, update="stable"), cls, reg, device=device)
    _, detrended, _ = feed(ALWA(mode="alwa2", interval=interval, update="stable", statistic="detrended"), cls, reg,
                           device=device)
    # The fall over a window is 0.4: its std is 0.4/sqrt(12) = 0.115 beside the noise's 0.05.
    assert raw[interval - 1:, 0].max() < 0.6
    assert (detrended[interval - 1:, 0] > 0.7).all() and (detrended[:, 0] <= 1.0).all()


def test_detrended_window_without_enough_finite_values_holds_lambda(device):
    alwa = ALWA(interval=3, update="stable", statistic="detrended").to(device)
    feed(alwa, [1.0, float("nan"), 1.0, float("inf")], [0.5] * 4, device=device)
    # Two finite values in a window of 3 recorded: the window is still open.
    assert alwa.num_updates.item() == 0 and alwa.skipped.item() == 2
    feed(alwa, [2.0], [0.5], device=device)  # the third: residual spread of cls beside reg's 0
    assert alwa.weights[0].item() == 1.0 and alwa.held.item() == 1 and alwa.num_updates.item() == 1
    feed(alwa, [1.0, 2.0, 1.2], [0.5, 0.7, 0.4], device=device)
    assert 0 < alwa.weights[0].item() < 1.0 and alwa.held.item() == 1


def test_detrended_state_resumes_mid_window_and_refuses_another_statistic(device):
    cls, reg = loss_sequences("decaying", 40, seed=1)
    whole, first = ALWA(interval=9, statistic="detrended"), ALWA(interval=9, statistic="detrended")
    _, after_whole, _ = feed(whole, cls, reg, device=device)
    feed(first, cls[:22], reg[:22], device=device)
    second = ALWA(interval=9, statistic="detrended")
    second.load_state_dict(first.state_dict())
    _, after_second, _ = feed(second, cls[22:], reg[22:], device=device)
    np.testing.assert_array_equal(after_second, after_whole[22:])
    with pytest.raises(RuntimeError, match="statistic='detrended'"):
        ALWA(interval=9).load_state_dict(first.state_dict())


def test_a_state_saved_before_the_statistic_existed_loads_as_raw(device):
    """Four-field windows and no `statistic` in the extra state: the layout of earlier versions."""
    cls, reg = loss_sequences("stationary", 30, seed=2)
    whole, first = ALWA(interval=7), ALWA(interval=7)
    _, after_whole, _ = feed(whole, cls, reg)
    feed(first, cls[:17], reg[:17])
    state = first.state_dict()
    state["window"] = state["window"][:, :4].clone()
    del state["_extra_state"]["statistic"]
    second = ALWA(interval=7)
    second.load_state_dict(state)
    _, after_second, _ = feed(second, cls[17:], reg[17:])
    np.testing.assert_array_equal(after_second, after_whole[17:])
    with pytest.raises(RuntimeError, match="statistic='raw'"):
        ALWA(interval=7, statistic="detrended").load_state_dict(state)
