"""alwa_ext.task_aligned_assign (torch.ops.alwa.task_aligned_assign): the fused kernels against the
dense eager reference (helpers.reference.task_aligned_assign) on every device, dtype and option,
exact ties and padding included; properties of the assignment; non-finite input; bad input;
opcheck and torch.compile. (Against ultralytics' own TaskAlignedAssigner, on real YOLOv8
outputs: tests/integrations/test_integration_ultralytics.py.)
"""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers import reference
from helpers.assign import OUTPUTS, assign_case
from helpers.cuda_host import schedule

# The reference's CIoU is its own eager formula: the target scores agree to rounding, the
# assignment itself exactly.
SCORE_TOLERANCES = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=1e-6)}


def assert_same(got, expected, scores_tol="rounding"):
    """Every output equal (the target scores to rounding, unless scores_tol=None: bitwise)."""
    for name, a, b in zip(OUTPUTS, got, expected):
        a = a.cpu()
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
        if name == "target_scores" and scores_tol is not None:
            if scores_tol == "rounding":
                scores_tol = SCORE_TOLERANCES.get(a.dtype, dict(rtol=1e-2, atol=1e-3))
            torch.testing.assert_close(a, b, **scores_tol, equal_nan=True, msg=lambda m: f"{name}: {m}")
        else:  # bitwise, NaN where NaN
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{name}: {m}")


def on(device, case):
    return tuple(t.to(device) for t in case)


# --------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("topk, topk2", [(10, None), (13, None), (7, 1), (3, 5), (1, None)])
@pytest.mark.parametrize("min_side", [0.0, 16.0])
def test_matches_reference(device, dtype, topk, topk2, min_side):
    for seed in range(3):
        case = assign_case(seed=seed, dtype=dtype, zero_scores=0.3 if seed == 1 else 0.0)
        kwargs = dict(topk=topk, topk2=topk2, alpha=0.5, beta=6.0, min_side=min_side)
        assert_same(alwa_ext.task_aligned_assign(*on(device, case), **kwargs),
                    reference.task_aligned_assign(*case, **kwargs))


def test_exact_ties_go_in_anchor_order(device):
    # Every score 0: every metric ties at 0, so each gt takes its topk anchors by index, and only
    # those inside it are positives. Integer-valued boxes make overlaps tie exactly as well.
    case = list(assign_case(seed=4, zero_scores=1.0))
    case[1] = case[1].round()
    for topk in (1, 5, 40):
        got = alwa_ext.task_aligned_assign(*on(device, case), topk=topk, alpha=0.5, beta=6.0)
        assert_same(got, reference.task_aligned_assign(*case, topk=topk, alpha=0.5, beta=6.0))
    # A box over the first anchors: with scores 0 its positives are exactly them.
    scores, pred, anc, labels, gt, mask = case
    gt[:, 0] = torch.tensor([0.0, 0.0, 40.0, 12.0])  # anchors (4, 4), (12, 4), ..., (36, 4)
    mask[:, 0] = 1
    got = alwa_ext.task_aligned_assign(*on(device, (scores, pred, anc, labels, gt, mask)), topk=3)
    fg_of_gt0 = (got[3] & (got[4] == 0)).cpu()
    assert fg_of_gt0[:, :3].all() and not fg_of_gt0[:, 3:].any()


@pytest.mark.parametrize("score_dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_scores_of_other_dtypes(device, score_dtype):
    case = assign_case(seed=7, dtype=torch.float32, score_dtype=score_dtype)
    got = alwa_ext.task_aligned_assign(*on(device, case), topk=10, alpha=0.5, beta=6.0)
    assert_same(got, reference.task_aligned_assign(*case, topk=10, alpha=0.5, beta=6.0))
    assert got[2].dtype == torch.promote_types(score_dtype, torch.float32)


def test_logits_give_the_assignment_of_their_sigmoid(device):
    scores, *rest = assign_case(seed=22, zero_scores=0.2)
    logits = torch.logit(scores, eps=1e-6)
    got = alwa_ext.task_aligned_assign(*on(device, [logits] + rest), topk=10, alpha=0.5, beta=6.0, logits=True)
    assert_same(got, reference.task_aligned_assign(logits, *rest, topk=10, alpha=0.5, beta=6.0, logits=True))


def test_half_boxes_are_computed_in_float32(device):
    case = assign_case(seed=8, dtype=torch.float16)
    got = alwa_ext.task_aligned_assign(*on(device, case), topk=10)
    expected = reference.task_aligned_assign(*case, topk=10)
    assert_same(got, expected, scores_tol=dict(rtol=1e-3, atol=1e-3))
    assert got[1].dtype == got[2].dtype == torch.float16


def test_arbitrary_anchor_points(device):
    # Not a grid: scattered points, duplicates and points on box edges (strictly inside only).
    g = torch.Generator().manual_seed(9)
    anc = (torch.rand(300, 2, generator=g) * 128).round()
    anc[10:20] = anc[0]
    case = assign_case(seed=9, anchors=anc)
    for topk in (1, 10):
        assert_same(alwa_ext.task_aligned_assign(*on(device, case), topk=topk, alpha=1.0, beta=6.0),
                    reference.task_aligned_assign(*case, topk=topk, alpha=1.0, beta=6.0))


def test_no_boxes_and_empty_images(device):
    scores, pred, anc, labels, gt, mask = assign_case(gts=0)
    got = alwa_ext.task_aligned_assign(*on(device, (scores, pred, anc, labels, gt, mask)), topk=10)
    assert (got[0] == scores.shape[-1]).all() and not got[3].any() and (got[2] == 0).all() and (got[4] == 0).all()
    case = assign_case(gts=4)
    case[5].zero_()  # every box padding
    got = alwa_ext.task_aligned_assign(*on(device, case), topk=10)
    assert not got[3].any() and (got[2] == 0).all()
    assert_same(got, reference.task_aligned_assign(*case, topk=10))
    zero_images = tuple(t[:0] if t.dim() == 3 else t for t in case)
    got = alwa_ext.task_aligned_assign(*on(device, zero_images), topk=10)
    assert got[2].shape == (0, case[0].shape[1], case[0].shape[2])


def test_hundreds_of_boxes(device):
    case = assign_case(batch=2, gts=300, seed=11, pad=False)
    assert_same(alwa_ext.task_aligned_assign(*on(device, case), topk=10, alpha=0.5, beta=6.0),
                reference.task_aligned_assign(*case, topk=10, alpha=0.5, beta=6.0))


def test_flat_labels_and_masks_and_bool_masks(device):
    scores, pred, anc, labels, gt, mask = assign_case(seed=12)
    expected = alwa_ext.task_aligned_assign(scores, pred, anc, labels, gt, mask, topk=10)
    got = alwa_ext.task_aligned_assign(*on(device, (scores, pred, anc, labels[..., 0].long(), gt, mask[..., 0].bool())),
                                       topk=10)
    assert_same(got, expected, scores_tol=None)


def test_non_contiguous_inputs(device):
    scores, pred, anc, labels, gt, mask = assign_case(seed=13)
    wide = torch.cat((scores, scores), -1)[..., ::2]
    expected = alwa_ext.task_aligned_assign(wide.contiguous(), pred, anc, labels, gt, mask, topk=10)
    got = alwa_ext.task_aligned_assign(*on(device, (wide, pred.transpose(0, 1).contiguous().transpose(0, 1), anc.t().contiguous().t(),
                                                    labels, gt, mask)), topk=10)
    assert_same(got, expected, scores_tol=None)


# --------------------------------------------------------------------------- properties


def test_properties_of_the_assignment(device):
    scores, pred, anc, labels, gt, mask = case = assign_case(batch=4, gts=8, seed=14)
    topk = 6
    target_labels, target_bboxes, target_scores, fg, gt_idx = (t.cpu() for t in alwa_ext.task_aligned_assign(
        *on(device, case), topk=topk, alpha=0.5, beta=6.0))
    for b in range(4):
        for a in fg[b].nonzero()[:, 0].tolist():
            j = int(gt_idx[b, a])
            assert mask[b, j, 0] == 1
            x1, y1, x2, y2 = gt[b, j].tolist()
            assert x1 < anc[a, 0] < x2 and y1 < anc[a, 1] < y2  # a positive lies inside its gt
            assert target_labels[b, a] == labels[b, j, 0] and torch.equal(target_bboxes[b, a], gt[b, j])
            assert (target_scores[b, a] != 0).sum() <= 1 and 0 <= target_scores[b, a].max() <= 1
        for j in range(8):
            assert ((gt_idx[b] == j) & fg[b]).sum() <= topk  # at most topk anchors a gt
        assert (target_scores[b][~fg[b]] == 0).all()
        assert (gt_idx[b][~fg[b]] == 0).all()


def test_bit_identical_and_independent_of_threads():
    case = assign_case(batch=6, gts=20, seed=15)
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(alwa_ext.task_aligned_assign(*case, topk=10, alpha=0.5, beta=6.0))
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        assert_same(run, runs[0], scores_tol=None)


@pytest.mark.cuda_host
def test_host_execution_under_the_reverse_schedule(cuda_kernels):
    if not cuda_kernels.on_host:
        pytest.skip("a schedule of the host execution")
    case = assign_case(batch=2, gts=12, seed=16, zero_scores=0.5)
    expected = alwa_ext.task_aligned_assign(*case, topk=7, topk2=2, alpha=0.5, beta=6.0)
    with schedule("reverse", cuda_kernels.library), cuda_kernels.run():
        got = alwa_ext.task_aligned_assign(*case, topk=7, topk2=2, alpha=0.5, beta=6.0)
    assert_same(got, expected, scores_tol=None)


def test_no_gradient_flows():
    scores, pred, anc, labels, gt, mask = assign_case(seed=17)
    outs = alwa_ext.task_aligned_assign(scores.requires_grad_(), pred.requires_grad_(), anc, labels, gt, mask, topk=5)
    assert not any(t.requires_grad for t in outs)


# --------------------------------------------------------------------------- non-finite input


def test_non_finite_scores_and_boxes_stay_in_bounds_and_show(device):
    scores, pred, anc, labels, gt, mask = assign_case(batch=2, gts=5, seed=18, pad=False)
    scores[0, :, :] = float("nan")
    pred[1, ::3] = float("inf")
    gt[1, 2] = float("nan")
    got = [t.cpu() for t in alwa_ext.task_aligned_assign(*on(device, (scores, pred, anc, labels, gt, mask)), topk=10)]
    # Image 0: NaN metrics rank first, so every gt takes topk anchors inside it, scores NaN.
    assert got[3][0].sum() > 0 and got[2][0][got[3][0]].isnan().any()
    # A NaN gt holds no anchor; the other outputs are in range.
    assert not ((got[4][1] == 2) & got[3][1]).any()
    assert ((got[4] >= 0) & (got[4] < 5)).all() and ((got[0] >= 0) & (got[0] < 4)).all()
    assert_same(got, reference.task_aligned_assign(scores, pred, anc, labels, gt, mask, topk=10))


# --------------------------------------------------------------------------- bad input


def test_argument_errors_name_the_argument(device):
    scores, pred, anc, labels, gt, mask = on(device, assign_case(seed=19))
    tal = alwa_ext.task_aligned_assign
    A = scores.shape[1]
    with pytest.raises(ValueError, match="pd_scores: expected shape"):
        tal(scores[0], pred, anc, labels, gt, mask)
    with pytest.raises(ValueError, match="pd_bboxes: expected shape"):
        tal(scores, pred[:, :-1], anc, labels, gt, mask)
    with pytest.raises(ValueError, match="anc_points: expected shape"):
        tal(scores, pred, anc[:-1], labels, gt, mask)
    with pytest.raises(ValueError, match="gt_bboxes: expected shape"):
        tal(scores, pred, anc, labels, gt[..., :3], mask)
    with pytest.raises(ValueError, match="gt_labels: expected shape"):
        tal(scores, pred, anc, labels[:, :-1], gt, mask)
    with pytest.raises(ValueError, match="mask_gt: expected shape"):
        tal(scores, pred, anc, labels, gt, mask[:, :-1])
    with pytest.raises(ValueError, match="pd_scores: expected float32"):
        tal(scores.long(), pred, anc, labels, gt, mask)
    with pytest.raises(ValueError, match=rf"topk: expected 1 <= topk <= anchors \({A}\), got {A + 1}"):
        tal(scores, pred, anc, labels, gt, mask, topk=A + 1)
    with pytest.raises(ValueError, match="topk2: expected"):
        tal(scores, pred, anc, labels, gt, mask, topk2=0)
    with pytest.raises(ValueError, match="alpha: expected a finite number >= 0"):
        tal(scores, pred, anc, labels, gt, mask, alpha=-1.0)
    with pytest.raises(ValueError, match="eps: expected a finite number > 0"):
        tal(scores, pred, anc, labels, gt, mask, eps=0.0)


def test_tensors_on_other_devices_are_refused():
    scores, pred, anc, labels, gt, mask = assign_case(seed=19)
    with pytest.raises(ValueError, match="gt_bboxes: expected the device of pd_scores"):
        alwa_ext.task_aligned_assign(scores, pred, anc, labels, gt.to("meta"), mask)


def test_labels_out_of_range_are_an_error_on_the_cpu():
    scores, pred, anc, labels, gt, mask = assign_case(seed=20, pad=False)
    labels[1, 3, 0] = 4
    with pytest.raises(ValueError, match=r"gt_labels: expected class indices in \[0, 4\) .* got 4 at image 1, box 3"):
        alwa_ext.task_aligned_assign(scores, pred, anc, labels, gt, mask)
    mask[1, 3] = 0  # padding: its label is not read as a class
    alwa_ext.task_aligned_assign(scores, pred, anc, labels, gt, mask)


# --------------------------------------------------------------------------- compile


@pytest.mark.registrations
def test_opcheck(device):
    op = torch.ops.alwa.task_aligned_assign.default
    for gts, topk2 in ((5, 10), (5, 2), (0, 10)):
        case = on(device, assign_case(gts=gts, seed=21))
        torch.library.opcheck(op, case + (10, topk2, 0.5, 6.0, 1e-9, 16.0, gts == 5))


@pytest.mark.registrations
def test_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()

    def assign(*case):
        return alwa_ext.task_aligned_assign(*case, topk=10, topk2=3, alpha=0.5, beta=6.0)

    compiled = torch.compile(assign, fullgraph=True, dynamic=True, backend="aot_eager")
    for gts in (4, 9):
        case = on(device, assign_case(gts=gts, seed=gts))
        assert_same(compiled(*case), tuple(t.cpu() for t in assign(*case)), scores_tol=None)
