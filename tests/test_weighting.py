"""ALWA (alwa_ext.ALWA, torch.ops.alwa.alwa_step / alwa_pooled_update).

The reference is a NumPy transcription of the paper's published algorithm (alwa_reference.py);
trajectories must match it to 1e-9 in float64.
"""
from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch

import alwa_ext
from alwa_ext import ALWA
from alwa_reference import loss_sequences, pooled_alwa, published_alwa

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
LOSS_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def run(alwa, cls_losses, reg_losses, *, device="cpu", dtype=torch.float64):
    """Feeds the sequences one iteration at a time. Returns (applied, after, returned) as
    float64 numpy arrays: the weights that weighted each iteration (returned / input), the
    weights after it, and the returned weighted losses."""
    applied, after, returned = [], [], []
    for loss_cls, loss_reg in zip(cls_losses, reg_losses):
        lc = torch.tensor(float(loss_cls), dtype=dtype, device=device)
        lr = torch.tensor(float(loss_reg), dtype=dtype, device=device)
        weighted_cls, weighted_reg = alwa(lc, lr)
        returned.append((weighted_cls.double().item(), weighted_reg.double().item()))
        with np.errstate(invalid="ignore", divide="ignore"):
            applied.append((returned[-1][0] / lc.double().item(), returned[-1][1] / lr.double().item()))
        after.append(alwa.weights.cpu().numpy().copy())
    return np.array(applied), np.array(after), np.array(returned)


# --------------------------------------------------------------------------- the published algorithm


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("update", ["paper", "stable"])
@pytest.mark.parametrize("kind", ["decaying", "stationary", "reg_dominant"])
@pytest.mark.parametrize("interval", [2, 7, 100])
@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_matches_published_algorithm(mode, interval, kind, update, device):
    n = 1000 if interval == 100 else 150
    cls, reg = loss_sequences(kind, n, seed=interval)
    alwa = ALWA(mode=mode, interval=interval, update=update, cls_weight=1.0, reg_weight=0.8)
    _, after, returned = run(alwa, cls, reg, device=device)
    ref_applied, ref_after = published_alwa(cls, reg, mode=mode, interval=interval, reg_weight=0.8, update=update)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    # The returned losses are the inputs times the weights in force before the iteration's update.
    np.testing.assert_allclose(returned, ref_applied * np.stack([cls, reg], 1), rtol=1e-9, atol=0)
    assert alwa.num_updates.item() == n // interval
    assert alwa.step.item() == n and alwa.skipped.item() == 0
    if kind == "reg_dominant":
        if interval >= 7:  # the rule never fires: cls statistic below reg's
            assert (after[:, 0] == 1.0).all()  # (windows of 2 are too noisy to say)
    else:
        assert len(np.unique(ref_after[:, 0])) > 1, "the sequence must make the rule fire"


@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_large_mean_small_spread_is_numerically_sound(mode):
    """Means of 1e7 with spreads of 1e-2/1e-3. "stable" records the losses unchanged, so each
    update depends on one window's statistics only. (With "paper" the products λ·x are
    rounded to 1e-10 against a spread of 1e-3: one ulp of λ moves the next std by ~1e-8 in
    any implementation, so no 1e-9 comparison of chained updates is meaningful there.)"""
    cls, reg = loss_sequences("large_mean", 60, seed=3)
    _, after, _ = run(ALWA(mode=mode, interval=20, update="stable"), cls, reg)
    _, ref_after = published_alwa(cls, reg, mode=mode, interval=20, update="stable")
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    assert ref_after[-1, 0] != 1.0

    # The test has teeth: the one-pass textbook variance (Σx² - n·mean²) / (n - 1) is far off.
    def naive_std(values):
        values = np.asarray(values)
        return math.sqrt(max((np.sum(values**2) - len(values) * np.mean(values) ** 2) / (len(values) - 1), 0.0))

    for values in (cls[:20], reg[:20]):
        assert abs(naive_std(values) - np.std(values, ddof=1)) > 0.1 * np.std(values, ddof=1)


def test_update_is_an_absolute_assignment_and_reg_weight_is_fixed():
    # interval 2, std of [a, b] is |a - b| / sqrt(2): pick the numbers by hand.
    alwa = ALWA(mode="alwa2", interval=2, cls_weight=0.5, reg_weight=3.0)
    alwa(torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    alwa(torch.tensor(9.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    # weighted cls window [0.5, 4.5] -> std 4/sqrt2; reg [3, 6] -> std 3/sqrt2; λcls = 3/4.
    assert alwa.weights.tolist() == pytest.approx([0.75, 3.0], rel=1e-15)
    assert alwa.window.abs().sum().item() == 0  # both windows emptied


def test_returned_losses_use_the_weights_before_the_update_and_are_differentiable():
    alwa = ALWA(mode="alwa2", interval=2)
    alwa(torch.tensor(1.0), torch.tensor(1.0))
    loss_cls = torch.tensor(9.0, requires_grad=True)
    loss_reg = torch.tensor(2.0, requires_grad=True)
    weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)  # closes the window: λcls 1 -> 1/8
    assert alwa.weights[0].item() == pytest.approx(1 / 8)
    assert weighted_cls.item() == 9.0 and weighted_reg.item() == 2.0
    (weighted_cls * 2 + weighted_reg * 3).backward()
    assert loss_cls.grad.item() == 2.0 and loss_reg.grad.item() == 3.0
    loss_cls = torch.tensor(4.0, requires_grad=True)
    weighted_cls, _ = alwa(loss_cls, torch.tensor(1.0))
    weighted_cls.backward()
    assert weighted_cls.item() == 0.5 and loss_cls.grad.item() == 1 / 8
    assert weighted_cls.dim() == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOSS_DTYPES)
def test_loss_dtypes_keep_float64_statistics(dtype, device):
    cls, reg = loss_sequences("decaying", 120, seed=5)
    alwa = ALWA(mode="alwa1", interval=7).to(device)
    _, after, _ = run(alwa, cls, reg, device=device, dtype=dtype)
    assert alwa.weights.dtype == torch.float64 and alwa.window.dtype == torch.float64
    # The window records double(loss) * λ: the reference fed the dtype-rounded losses agrees
    # to float64 precision.
    rounded_cls = torch.tensor(cls).to(dtype).double().numpy()
    rounded_reg = torch.tensor(reg).to(dtype).double().numpy()
    _, ref_after = published_alwa(rounded_cls, rounded_reg, mode="alwa1", interval=7)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    weighted_cls, weighted_reg = alwa(torch.tensor(1.0, dtype=dtype, device=device), torch.tensor(1.0, dtype=dtype, device=device))
    assert weighted_cls.dtype == dtype and weighted_reg.dtype == dtype
    # Half types get λ rounded through float32, as at::opmath_type does on both backends.
    through = torch.float64 if dtype == torch.float64 else torch.float32
    expected = torch.tensor(alwa.weights[0].item(), dtype=through).to(dtype)
    assert weighted_cls.cpu() == expected


def test_mixed_loss_dtypes():
    alwa = ALWA(interval=2, cls_weight=0.5)
    weighted_cls, weighted_reg = alwa(torch.tensor(2.0, dtype=torch.bfloat16), torch.tensor(2.0, dtype=torch.float64))
    assert weighted_cls.dtype == torch.bfloat16 and weighted_reg.dtype == torch.float64
    assert weighted_cls.item() == 1.0 and weighted_reg.item() == 2.0


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("update", ["paper", "stable"])
def test_resume_mid_window_equals_uninterrupted_run(update, device):
    cls, reg = loss_sequences("decaying", 260, seed=11)
    kwargs = dict(mode="alwa1", interval=100, update=update)
    uninterrupted = ALWA(**kwargs)
    _, after_full, returned_full = run(uninterrupted, cls, reg, device=device)

    first = ALWA(**kwargs)
    run(first, cls[:137], reg[:137], device=device)  # 37 values into the second window
    assert first.window[0, 0].item() == 37
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = ALWA(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.to(device)
    _, after_resumed, returned_resumed = run(resumed, cls[137:], reg[137:], device=device)
    np.testing.assert_array_equal(after_resumed, after_full[137:])
    np.testing.assert_array_equal(returned_resumed, returned_full[137:])
    for name in ("weights", "window", "step", "skipped", "num_updates"):
        assert torch.equal(getattr(resumed, name), getattr(uninterrupted, name)), name


def test_state_dict_holds_the_whole_state():
    alwa = ALWA(interval=5)
    assert set(alwa.state_dict()) == {"weights", "window", "step", "skipped", "num_updates", "_extra_state"}
    clone = copy.deepcopy(alwa)
    run(clone, [1.0, 2.0], [0.5, 0.7])
    assert alwa.step.item() == 0 and clone.step.item() == 2


def test_module_dtype_casts_leave_the_statistics_in_float64():
    alwa = ALWA(cls_weight=0.3)
    run(alwa, [1.0, 2.0, 4.0], [0.5, 0.7, 0.1])
    before = {name: buffer.clone() for name, buffer in alwa.named_buffers()}
    alwa.half()
    alwa.to(torch.bfloat16)
    alwa.float()
    for name, buffer in alwa.named_buffers():
        assert buffer.dtype == before[name].dtype and torch.equal(buffer, before[name]), name


# --------------------------------------------------------------------------- non-finite losses


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_nonfinite_losses_are_skipped_and_counted(mode, device):
    cls, reg = loss_sequences("decaying", 200, seed=2)
    cls[[3, 50, 51, 120]] = [np.nan, np.inf, -np.inf, np.nan]
    reg[[4, 51, 199]] = [np.inf, np.nan, -np.inf]
    alwa = ALWA(mode=mode, interval=7)
    _, after, returned = run(alwa, cls, reg, device=device)
    _, ref_after = published_alwa(cls, reg, mode=mode, interval=7)
    np.testing.assert_allclose(after, ref_after, rtol=1e-9, atol=0)
    assert alwa.skipped.item() == 6 and alwa.step.item() == 200
    assert alwa.num_updates.item() == (200 - 6) // 7
    assert np.isfinite(after).all()
    assert np.isnan(returned[3, 0])  # the loss itself is returned as it is (weighted)


def test_weights_never_become_nonfinite():
    # A huge λcls overflows the weighted value: not recorded. Zero-spread windows: no update.
    alwa = ALWA(interval=2, cls_weight=1e308)
    run(alwa, [10.0, 20.0, 30.0], [1.0, 2.0, 3.0])
    assert alwa.skipped.item() == 3 and torch.isfinite(alwa.weights).all()
    alwa = ALWA(interval=2)
    run(alwa, [1.0, 1.0, np.nan, np.inf], [1.0, 1.0, 1.0, 1.0])
    assert alwa.weights.tolist() == [1.0, 1.0]
    # Only non-finite losses for whole windows: the window never fills, nothing changes.
    alwa = ALWA(interval=2)
    run(alwa, [np.nan] * 6, [1.0] * 6)
    assert alwa.weights.tolist() == [1.0, 1.0] and alwa.num_updates.item() == 0


# --------------------------------------------------------------------------- "paper" vs "stable"


def test_paper_rule_oscillates_and_stable_rule_converges_on_stationary_losses():
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
    for update in ("paper", "stable"):
        alwa = ALWA(mode="alwa2", interval=interval, update=update)
        _, after, _ = run(alwa, cls, reg)
        per_window[update] = after[interval - 1 :: interval, 0]
        _, ref_after = published_alwa(cls, reg, mode="alwa2", interval=interval, update=update)
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
    args = [alwa.weights, alwa.window, alwa.step, alwa.skipped, alwa.num_updates]
    with pytest.raises(ValueError, match="interval"):
        torch.ops.alwa.alwa_step(one, one, *args, 1, "alwa2", "paper")
    with pytest.raises(ValueError, match="mode"):
        torch.ops.alwa.alwa_step(one, one, *args, 2, "alwa9", "paper")
    with pytest.raises(ValueError, match="weights"):
        torch.ops.alwa.alwa_step(one, one, alwa.weights.float(), *args[1:], 2, "alwa2", "paper")
    with pytest.raises(ValueError, match="window"):
        torch.ops.alwa.alwa_step(one, one, args[0], torch.zeros(3, 2, dtype=torch.float64), *args[2:], 2, "alwa2", "paper")
    with pytest.raises(ValueError, match="rank_windows"):
        torch.ops.alwa.alwa_pooled_update(torch.zeros(2, 4, dtype=torch.float64), alwa.weights, alwa.window, alwa.num_updates, "alwa2")
    assert alwa.step.item() == 0


# --------------------------------------------------------------------------- the ops


def sample_inputs(device="cpu"):
    """alwa_step arguments covering dtypes, the record-only interval 0, a window one value
    from full, and a non-finite loss."""
    def state(window_count=0.0, cls_weight=1.0):
        window = torch.tensor([[window_count, 2.0, 0.5, 0.7], [window_count, 0.4, 0.01, 0.02]], dtype=torch.float64, device=device)
        if window_count == 0:
            window.zero_()
        scalar = lambda v: torch.tensor(v, dtype=torch.int64, device=device)  # noqa: E731
        return [torch.tensor([cls_weight, 1.0], dtype=torch.float64, device=device), window, scalar(int(window_count)), scalar(0), scalar(0)]

    for dtype in LOSS_DTYPES:
        lc = torch.tensor(2.5, dtype=dtype, device=device)
        lr = torch.tensor(0.3, dtype=dtype, device=device)
        yield (lc, lr, *state(), 100, "alwa2", "paper")
        yield (lc, lr, *state(2.0, 0.7), 3, "alwa1", "paper")  # closes the window
        yield (lc, lr, *state(2.0), 3, "alwa2", "stable")
        yield (lc, lr, *state(5.0), 0, "alwa2", "paper")  # record only
    nan = torch.tensor(float("nan"), device=device)
    yield (nan, torch.tensor(1.0, device=device), *state(2.0), 3, "alwa2", "paper")


@pytest.mark.parametrize("device", DEVICES)
def test_alwa_step_opcheck(device):
    for args in sample_inputs(device):
        torch.library.opcheck(torch.ops.alwa.alwa_step.default, args)


@pytest.mark.parametrize("device", DEVICES)
def test_alwa_pooled_update_opcheck(device):
    f64 = dict(dtype=torch.float64, device=device)
    rank_windows = torch.tensor([[[3, 2.0, 1.0, 2.0], [3, 0.5, 0.02, 0.03]], [[2, 3.0, 0.5, 0.5], [2, 0.4, 0.01, 0.01]]], **f64)
    args = (rank_windows, torch.tensor([1.0, 1.0], **f64), torch.ones(2, 4, **f64), torch.tensor(4, device=device), "alwa1")
    torch.library.opcheck(torch.ops.alwa.alwa_pooled_update.default, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["alwa1", "alwa2"])
def test_pooled_update_equals_the_statistics_of_the_concatenated_windows(mode, device):
    rng = np.random.default_rng(0)
    # Three ranks, one with an empty window, one with a single value: all merge exactly.
    rank_values = [(rng.normal(2, 0.5, 9), rng.normal(0.5, 0.1, 9)), (np.array([]), np.array([])), (np.array([3.0]), np.array([0.2]))]
    windows = []
    for cls_values, reg_values in rank_values:
        alwa = ALWA(mode=mode, interval=10_000)
        run(alwa, cls_values, reg_values)
        windows.append(alwa.window)
    state = ALWA(mode=mode).to(device)
    state.window.fill_(7.0)
    torch.ops.alwa.alwa_pooled_update(torch.stack(windows).to(device), state.weights, state.window, state.num_updates, mode)
    cls_all = np.concatenate([v[0] for v in rank_values])
    reg_all = np.concatenate([v[1] for v in rank_values])
    _, ref_after = published_alwa(cls_all, reg_all, mode=mode, interval=len(cls_all))
    assert state.weights.cpu().numpy() == pytest.approx(ref_after[-1], rel=1e-12)
    assert state.window.abs().sum().item() == 0 and state.num_updates.item() == 1


# --------------------------------------------------------------------------- torch.compile


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counts of earlier tests' graphs
    cls, reg = loss_sequences("decaying", 40, seed=4)

    def training_step(alwa, pred_cls, pred_reg):
        loss_cls = (pred_cls**2).sum()
        loss_reg = (pred_reg - 1).abs().sum()
        weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)
        return weighted_cls + weighted_reg

    compiled_step = torch.compile(training_step, fullgraph=True, backend="aot_eager")
    eager, compiled = ALWA(mode="alwa1", interval=5), ALWA(mode="alwa1", interval=5)
    for c, r in zip(cls, reg):
        grads = []
        for alwa, step in ((eager, training_step), (compiled, compiled_step)):
            pred_cls = torch.tensor([math.sqrt(c)], requires_grad=True)
            pred_reg = torch.tensor([1 + r], requires_grad=True)
            total = step(alwa, pred_cls, pred_reg)
            total.backward()
            grads.append((total.item(), pred_cls.grad.item(), pred_reg.grad.item()))
        assert grads[0] == pytest.approx(grads[1], rel=1e-12)
        assert torch.equal(eager.weights, compiled.weights)
        assert torch.equal(eager.window, compiled.window)
    assert compiled.num_updates.item() == 8
    # One graph for the whole run: nothing recompiles as the statistics change.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_compile_inductor_fullgraph():
    torch._dynamo.reset()
    alwa = ALWA(interval=3)
    compiled = torch.compile(lambda a, b: alwa(a, b), fullgraph=True)
    reference = ALWA(interval=3)
    for c, r in [(2.0, 0.5), (3.0, 0.4), (5.0, 0.9), (1.0, 0.1), (2.0, 0.2), (4.0, 0.3), (0.5, 0.5)]:
        out = compiled(torch.tensor(c, dtype=torch.float64), torch.tensor(r, dtype=torch.float64))
        expected = reference(torch.tensor(c, dtype=torch.float64), torch.tensor(r, dtype=torch.float64))
        assert out[0].item() == pytest.approx(expected[0].item(), rel=1e-15)
        assert torch.equal(alwa.weights, reference.weights)
        assert torch.equal(alwa.window, reference.window)


# --------------------------------------------------------------------------- CUDA


@requires_cuda
def test_cuda_matches_cpu_bitwise():
    cls, reg = loss_sequences("decaying", 300, seed=9)
    outs = []
    for device in ("cpu", "cuda"):
        alwa = ALWA(mode="alwa1", interval=7)
        outs.append(run(alwa, cls, reg, device=device, dtype=torch.float32))
    for cpu, cuda in zip(*outs):
        np.testing.assert_array_equal(cpu, cuda)


@requires_cuda
def test_state_follows_the_losses_to_the_device():
    alwa = ALWA()
    alwa(torch.tensor(1.0, device="cuda"), torch.tensor(1.0, device="cuda"))
    assert alwa.weights.device.type == "cuda" and alwa.step.device.type == "cuda"
    assert alwa.weights.dtype == torch.float64


def _cuda_training_step(model, alwa, x, target_cls, target_reg):
    out = model(x)
    loss_cls = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], target_cls)
    loss_reg = torch.nn.functional.smooth_l1_loss(out[:, 1:], target_reg)
    weighted_cls, weighted_reg = alwa(loss_cls, loss_reg)
    (weighted_cls + weighted_reg).backward()
    return weighted_cls.detach(), weighted_reg.detach()


def _cuda_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(64, 16, generator=g), (torch.rand(64, generator=g) > 0.5).float(), torch.randn(64, 4, generator=g))
        for _ in range(n)
    ]


@requires_cuda
def test_cuda_training_step_runs_without_host_sync():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 5).cuda()
    alwa = ALWA(mode="alwa2", interval=3).cuda()
    batches = [[t.cuda() for t in b] for b in _cuda_batches(10)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, tc, tr in batches:
            model.zero_grad(set_to_none=False)
            _cuda_training_step(model, alwa, x, tc, tr)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert alwa.step.item() == 10 and alwa.num_updates.item() == 3


@requires_cuda
@pytest.mark.parametrize("update", ["paper", "stable"])
def test_cuda_graph_replays_advance_statistics_and_update_on_time(update):
    torch.manual_seed(0)
    batches = _cuda_batches(23, seed=1)
    interval = 4

    # Eager run.
    model = torch.nn.Linear(16, 5).cuda()
    initial = copy.deepcopy(model.state_dict())
    alwa = ALWA(mode="alwa1", interval=interval, update=update).cuda()
    eager = []
    for x, tc, tr in batches:
        model.zero_grad(set_to_none=False)
        out = _cuda_training_step(model, alwa, x.cuda(), tc.cuda(), tr.cuda())
        eager.append((torch.stack(out).cpu(), alwa.weights.cpu().clone()))

    # Captured: one warm-up iteration on a side stream, then capture one iteration and replay.
    model.load_state_dict(initial)
    graph_alwa = ALWA(mode="alwa1", interval=interval, update=update).cuda()
    static = [t.cuda() for t in batches[0]]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        model.zero_grad(set_to_none=False)
        first = _cuda_training_step(model, graph_alwa, *static)
    torch.cuda.current_stream().wait_stream(side)
    replayed = [(torch.stack(first).cpu(), graph_alwa.weights.cpu().clone())]
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        static_out = _cuda_training_step(model, graph_alwa, *static)
    for x, tc, tr in batches[1:]:
        for dst, src in zip(static, (x, tc, tr)):
            dst.copy_(src)
        model.zero_grad(set_to_none=False)
        graph.replay()
        replayed.append((torch.stack(static_out).cpu(), graph_alwa.weights.cpu().clone()))
    torch.cuda.synchronize()
    # Capture itself does not execute: the state advanced once per eager call and replay only.
    assert graph_alwa.step.item() == len(batches)
    assert graph_alwa.num_updates.item() == len(batches) // interval
    for (eager_out, eager_weights), (graph_out, graph_weights) in zip(eager, replayed):
        torch.testing.assert_close(graph_out, eager_out, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(graph_weights, eager_weights, rtol=1e-9, atol=0)
