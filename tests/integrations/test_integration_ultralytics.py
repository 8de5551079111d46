"""alwa_ext.integrations.ultralytics against ultralytics' own detection loss and trainer.

Offline: ultralytics' settings go to a temporary folder, YOLO_OFFLINE turns its online checks
off, the font check of the dataset loader is stubbed, plots are off, the model is built from
its yaml (no weights) and the dataset is written by the test.
"""
from __future__ import annotations

import pytest
import torch
from integration_helpers import (  # noqa: F401
    alwa2_lambda,
    no_host_transfers,
    single_thread,
    to_meta,
    ultralytics_offline,
    write_yolo_dataset,
)

ultralytics_offline()
ultralytics = pytest.importorskip("ultralytics")

from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.loss import BboxLoss, DFLoss, v8DetectionLoss  # noqa: E402
from ultralytics.utils.metrics import bbox_iou  # noqa: E402
from ultralytics.utils.tal import TaskAlignedAssigner  # noqa: E402

import alwa_ext  # noqa: E402
from helpers import reference  # noqa: E402
from alwa_ext.integrations.ultralytics import (  # noqa: E402
    CHECKPOINT_ATTRIBUTE,
    AlwaDetectionLoss,
    FusedTaskAlignedAssigner,
    AlwaDetectionTrainer,
    AlwaE2EDetectionLoss,
    FusedBboxLoss,
    build_criterion,
)


# --------------------------------------------------------------------------- models and batches


@pytest.fixture(scope="module")
def yolov8n():
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.args = get_cfg()  # the default gains: box 7.5, cls 0.5, dfl 1.5
    return model.train()


@pytest.fixture(scope="module")
def yolo26n():
    torch.manual_seed(0)
    model = DetectionModel("yolo26n.yaml", nc=3, verbose=False)  # end-to-end head, reg_max 1
    model.args = get_cfg()
    return model.train()


def make_batch(seed=1, size=64, boxes_per_image=(2, 1, 0)):
    """A training batch as ultralytics' dataloader gives it: normalised xywh labels; the last
    image has no object."""
    g = torch.Generator().manual_seed(seed)
    batch_idx, cls, bboxes = [], [], []
    for image, count in enumerate(boxes_per_image):
        for _ in range(count):
            batch_idx.append(float(image))
            cls.append([float(torch.randint(0, 3, (), generator=g))])
            centre = torch.rand(2, generator=g) * 0.5 + 0.25
            size_wh = torch.rand(2, generator=g) * 0.3 + 0.15
            bboxes.append(torch.cat([centre, size_wh]).tolist())
    return {
        "img": torch.rand(len(boxes_per_image), 3, size, size, generator=g),
        "batch_idx": torch.tensor(batch_idx),
        "cls": torch.tensor(cls).reshape(-1, 1),
        "bboxes": torch.tensor(bboxes).reshape(-1, 4),
    }


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def loss_and_grads(criterion, model, batch):
    preds = model(batch["img"])
    loss, items = criterion(preds, batch)
    grads = torch.autograd.grad(loss.sum(), trainable(model))
    return loss.detach(), items, grads


def assert_grads_close(actual, expected):
    scale = max(g.abs().max() for g in expected)
    assert scale > 0
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5 * scale)


# --------------------------------------------------------------------------- parity with ALWA off


@pytest.mark.parametrize("model_name", ["yolov8n", "yolo26n"])
def test_fused_criterion_without_alwa_equals_ultralytics(model_name, request):
    model = request.getfixturevalue(model_name)
    batch = make_batch()
    expected, expected_items, expected_grads = loss_and_grads(model.init_criterion(), model, batch)
    criterion = build_criterion(model, alwa=None)
    assert isinstance(criterion, AlwaE2EDetectionLoss if model_name == "yolo26n" else AlwaDetectionLoss)
    actual, actual_items, actual_grads = loss_and_grads(criterion, model, batch)
    assert (expected > 0).all()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    assert list(actual_items) == list(expected_items)
    for key in expected_items:
        torch.testing.assert_close(actual_items[key], expected_items[key], rtol=1e-5, atol=1e-6)
    assert_grads_close(actual_grads, expected_grads)


def test_batch_without_objects_matches_ultralytics(yolov8n):
    batch = make_batch(boxes_per_image=(0, 0))
    expected, _, _ = loss_and_grads(yolov8n.init_criterion(), yolov8n, batch)
    actual, _, _ = loss_and_grads(AlwaDetectionLoss(yolov8n), yolov8n, batch)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    assert actual[0] == 0 and actual[2] == 0


def bbox_loss_inputs(reg_max, seed=2, batch=2, anchors=40):
    g = torch.Generator().manual_seed(seed)
    anchor_points = torch.rand(anchors, 2, generator=g) * 8 + 1
    stride = torch.full((anchors, 1), 8.0)
    pred_dist = torch.randn(batch, anchors, 4 * reg_max, generator=g)
    pred_bboxes = torch.cat([anchor_points - torch.rand(batch, anchors, 2, generator=g) * 3,
                             anchor_points + torch.rand(batch, anchors, 2, generator=g) * 3], -1)
    target_bboxes = torch.cat([anchor_points - torch.rand(batch, anchors, 2, generator=g) * 4,
                               anchor_points + torch.rand(batch, anchors, 2, generator=g) * 4], -1)
    fg_mask = torch.rand(batch, anchors, generator=g) < 0.4
    target_scores = torch.rand(batch, anchors, 3, generator=g) * fg_mask.unsqueeze(-1)
    target_scores_sum = target_scores.sum().clamp(min=1)
    imgsz = torch.tensor([64.0, 96.0])
    return [pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz, stride]


@pytest.mark.parametrize("reg_max", [16, 1])
def test_fused_bbox_loss_equals_ultralytics_bbox_loss(reg_max):
    inputs = bbox_loss_inputs(reg_max)
    theirs = [x.clone().requires_grad_() if i < 2 else x.clone() for i, x in enumerate(inputs)]
    ours = [x.clone().requires_grad_() if i < 2 else x.clone() for i, x in enumerate(inputs)]
    expected = BboxLoss(reg_max)(*theirs)
    actual = FusedBboxLoss(reg_max, "ciou")(*ours)
    sum(expected).backward()
    sum(actual).backward()
    for a, e in zip(actual, expected):
        assert e > 0
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    for a, e in zip(ours[:2], theirs[:2]):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["giou", "diou", "eiou", "siou"])
def test_fused_bbox_loss_takes_every_iou_kind(kind):
    pred_dist, pred, anchor_points, target, scores, scores_sum, fg, imgsz, stride = bbox_loss_inputs(16)
    actual, _ = FusedBboxLoss(16, kind)(pred_dist, pred, anchor_points, target, scores, scores_sum, fg, imgsz, stride)
    weight = scores[fg].sum(-1)
    if kind in ("giou", "diou"):  # ultralytics has these two: its own formula is the reference
        iou = bbox_iou(pred[fg], target[fg], xywh=False, GIoU=kind == "giou", DIoU=kind == "diou").squeeze(-1)
        expected = ((1 - iou) * weight).sum() / scores_sum
    else:  # EIoU / SIoU: the eager reference on the foreground
        expected = (reference.box_loss(pred[fg].double(), target[fg].double(), kind, reduction="none") * weight).sum() / scores_sum
    torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_boxes_under_amp_are_compared_in_float32(dtype):
    # Under autocast the decoded boxes come out in half precision and the targets in float32
    # (ultralytics#280, #1149: NaN losses under AMP); box_loss compares them in float32.
    inputs = bbox_loss_inputs(16)
    expected = FusedBboxLoss(16, "ciou")(*inputs)
    half = list(inputs)
    half[1] = inputs[1].to(dtype).requires_grad_()
    actual = FusedBboxLoss(16, "ciou")(*half)
    sum(actual).backward()
    assert actual[0].dtype == torch.float32 and half[1].grad.dtype == dtype
    assert torch.isfinite(half[1].grad.float()).all()
    torch.testing.assert_close(actual[0], expected[0], rtol=2e-2, atol=1e-3)


# --------------------------------------------------------------------------- the fused assigner and DFL


def scene_batch(seed, size, boxes_per_image):
    """A batch of drawn scenes: images with the rectangles of their labels painted in, so a
    model trained on them sees its boxes (random pixels elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(len(boxes_per_image), 3, size, size, generator=g) * 0.3
    batch_idx, cls, bboxes = [], [], []
    for image, count in enumerate(boxes_per_image):
        for _ in range(count):
            label = int(torch.randint(0, 3, (), generator=g))
            centre = torch.rand(2, generator=g) * 0.8 + 0.1
            wh = torch.rand(2, generator=g) * 0.25 + 0.02
            x1, y1 = ((centre - wh / 2).clamp(0, 1) * size).long().tolist()
            x2, y2 = ((centre + wh / 2).clamp(0, 1) * size).long().tolist()
            images[image, label, y1:y2 + 1, x1:x2 + 1] = 1.0
            batch_idx.append(float(image))
            cls.append([float(label)])
            bboxes.append(torch.cat([centre, wh]).tolist())
    return {"img": images, "batch_idx": torch.tensor(batch_idx), "cls": torch.tensor(cls).reshape(-1, 1),
            "bboxes": torch.tensor(bboxes).reshape(-1, 4)}


@pytest.fixture(scope="module")
def trained_yolov8n():
    """yolov8n after 40 SGD steps with ultralytics' own criterion on drawn scenes: predictions
    that overlap their boxes (the random-init ones mostly do not), scores away from the prior."""
    torch.manual_seed(1)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.args = get_cfg()
    model.train()
    criterion = v8DetectionLoss(model)
    optimizer = torch.optim.SGD(trainable(model), lr=0.01, momentum=0.9)
    batch = scene_batch(100, 128, (3, 2, 4, 1))
    for _ in range(40):
        loss, _ = criterion(model(batch["img"]), batch)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    return model


# (seed, image size, boxes per image): empty images, a crowded one, hundreds of boxes.
PARITY_BATCHES = [(11, 128, (3, 0, 5, 1)), (12, 128, (0, 0)), (13, 256, (300, 2)), (14, 160, (40, 17, 0, 8))]


def assigner_inputs(criterion, preds, batch):
    """The six tensors the criterion's assigner is called with on (preds, batch)."""
    seen = []
    assigner = criterion.assigner

    def record(*args, **kwargs):
        seen.append(args)
        return assigner(*args, **kwargs)

    criterion.assigner = record
    try:
        criterion(preds, batch)
    finally:
        criterion.assigner = assigner
    return seen[0]


def zero_metric_ties(stock, inputs, fg_stock, fg_fused, idx_stock, idx_fused):
    """Where two assignments differ: the anchors, how many of them are exact ties at metric 0
    (the anchor inside the gt either side gave it to, its align metric exactly 0 there), and
    the (image, gt) pairs they belong to."""
    _, align_metric, _ = stock.get_pos_mask(*[inputs[i] for i in (0, 1, 3, 4, 2, 5)])
    differ = (fg_stock != fg_fused) | (fg_stock & fg_fused & (idx_stock != idx_fused))
    explained, gts_touched = 0, set()
    for b, a in differ.nonzero().tolist():
        gts = {int(idx_stock[b, a])} if fg_stock[b, a] else set()
        gts |= {int(idx_fused[b, a])} if fg_fused[b, a] else set()
        explained += all(align_metric[b, j, a] == 0 for j in gts)
        gts_touched |= {(b, j) for j in gts}
    return int(differ.sum()), explained, gts_touched


@pytest.mark.parametrize("model_name", ["yolov8n", "trained_yolov8n"])
@pytest.mark.parametrize("seed, size, boxes", PARITY_BATCHES, ids=["mixed", "empty", "hundreds", "crowded"])
def test_fused_assigner_equals_ultralytics_on_real_outputs(model_name, seed, size, boxes, request):
    model = request.getfixturevalue(model_name)
    batch = scene_batch(seed, size, boxes)
    stock = v8DetectionLoss(model)
    with torch.no_grad():
        preds = model(batch["img"])
    inputs = assigner_inputs(stock, preds, batch)
    expected = stock.assigner(*inputs)
    fused = FusedTaskAlignedAssigner.like(stock.assigner)
    got = fused(*inputs)
    for name, a, e in zip(("labels", "boxes", "scores", "fg", "gt_idx"), got, expected):
        assert a.dtype == e.dtype and a.shape == e.shape, name
    fg_e, fg_a, idx_e, idx_a = expected[3], got[3], expected[4], got[4]
    differ, ties, touched = zero_metric_ties(stock.assigner, inputs, fg_e, fg_a, idx_e, idx_a)
    # ultralytics' CPU top-k (libstdc++'s partial sort) takes exact ties at metric 0 in another
    # order than the lower anchor index (its CUDA top-k, like ours, in index order); no other
    # difference is allowed. A tied anchor of metric 0 can still have a positive overlap (its
    # score 0), which enters its gt's normalisation: that gt's target scores may differ too.
    print(f"{model_name} {boxes}: {int(fg_e.sum())} foreground anchors, {differ} differ, {ties} exact ties at "
          f"metric 0, {len(touched)} gts touched")
    assert differ == ties, f"{differ} anchors differ, {ties} of them exact ties at metric 0"
    if differ == 0:
        assert torch.equal(fg_a, fg_e) and torch.equal(idx_a, idx_e)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    untouched = fg_a == fg_e
    for b, j in touched:
        untouched[b] &= ~(fg_e[b] & (idx_e[b] == j))
    torch.testing.assert_close(got[2][untouched], expected[2][untouched], rtol=1e-5, atol=1e-6)
    if boxes[0] == 300:
        assert fg_e.sum() > 500  # the crowded image is assigned for real


@pytest.mark.parametrize("model_name", ["yolov8n", "trained_yolov8n"])
@pytest.mark.parametrize("seed, size, boxes", PARITY_BATCHES, ids=["mixed", "empty", "hundreds", "crowded"])
def test_fused_loss_stage_equals_ultralytics_on_real_outputs(model_name, seed, size, boxes, request):
    model = request.getfixturevalue(model_name)
    batch = scene_batch(seed, size, boxes)
    stock = v8DetectionLoss(model)
    with torch.no_grad():
        inputs = assigner_inputs(stock, model(batch["img"]), batch)
    expected_assignment = stock.assigner(*inputs)
    got_assignment = FusedTaskAlignedAssigner.like(stock.assigner)(*inputs)
    differ, ties, touched = zero_metric_ties(stock.assigner, inputs, expected_assignment[3], got_assignment[3],
                                             expected_assignment[4], got_assignment[4])
    if differ:
        # Exact ties at metric 0 assigned in another order (test_fused_assigner_equals_...): the
        # loss stage is then compared with ultralytics' given the same assignment, its own
        # criterion with the fused assigner in place of its TaskAlignedAssigner.
        assert differ == ties
        print(f"{model_name} {boxes}: {ties} tied anchors of {len(touched)} gts: compared with the same assignment")
        stock.assigner = FusedTaskAlignedAssigner.like(stock.assigner)
    expected, expected_items, expected_grads = loss_and_grads(stock, model, batch)
    actual, actual_items, actual_grads = loss_and_grads(build_criterion(model, alwa=None), model, batch)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)
    for key in expected_items:
        torch.testing.assert_close(actual_items[key], expected_items[key], rtol=1e-5, atol=1e-7)
    scale = max(g.abs().max() for g in expected_grads)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-5 * scale)


def test_fused_assigner_is_a_task_aligned_assigner_with_its_settings():
    stock = TaskAlignedAssigner(topk=7, num_classes=5, alpha=0.5, beta=6.0, stride=[8, 16, 32], topk2=1)
    fused = FusedTaskAlignedAssigner.like(stock)
    assert isinstance(fused, TaskAlignedAssigner)
    assert (fused.topk, fused.topk2, fused.alpha, fused.beta, fused.eps, fused.stride_val) == (7, 1, 0.5, 6.0, 1e-9, 16)
    with pytest.raises(ValueError, match="pd_scores: expected 5 classes"):
        fused(torch.rand(1, 4, 3), torch.rand(1, 4, 4), torch.rand(4, 2), torch.zeros(1, 1, 1), torch.rand(1, 1, 4),
              torch.ones(1, 1, 1))
    with pytest.raises(TypeError, match="no extra tensors"):
        fused(torch.rand(1, 4, 5), torch.rand(1, 4, 4), torch.rand(4, 2), torch.zeros(1, 1, 1), torch.rand(1, 1, 4),
              torch.ones(1, 1, 1), pd_kpts=torch.zeros(1))


def test_e2e_branches_use_both_fused_assigners(yolo26n):
    criterion = build_criterion(yolo26n, alwa=None)
    many, one = criterion.one2many.assigner, criterion.one2one.assigner
    assert isinstance(many, FusedTaskAlignedAssigner) and isinstance(one, FusedTaskAlignedAssigner)
    assert (many.topk, many.topk2, one.topk, one.topk2) == (10, 10, 7, 1)
    stock = build_criterion(yolo26n, alwa=None, assigner="ultralytics")
    assert type(stock.one2one.assigner) is TaskAlignedAssigner
    with pytest.raises(ValueError, match="assigner: expected one of 'fused', 'ultralytics'"):
        build_criterion(yolo26n, assigner="tal")


def test_distribution_focal_loss_equals_ultralytics_dfloss():
    g = torch.Generator().manual_seed(3)
    for reg_max in (16, 8):
        pred = torch.randn(50 * 4, reg_max, generator=g, dtype=torch.float64) * 2
        target = torch.rand(50, 4, generator=g, dtype=torch.float64) * (reg_max - 1)
        target[0, 0] = reg_max - 1  # clamped by DFLoss to reg_max - 1.01: ultralytics' convention
        theirs_pred = pred.clone().requires_grad_()
        theirs = DFLoss(reg_max)(theirs_pred, target.clone())  # (50, 1): mean over the four sides
        ours_pred = pred.clone().requires_grad_()
        clamped = target.clamp(0, reg_max - 1 - 0.01)
        ours = alwa_ext.distribution_focal_loss(ours_pred.view(50, 4, reg_max), clamped, reduction="none").mean(-1, keepdim=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        weight = torch.rand(50, 1, generator=g, dtype=torch.float64)
        (theirs * weight).sum().backward()
        (ours * weight).sum().backward()
        torch.testing.assert_close(ours_pred.grad, theirs_pred.grad, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- ALWA


def test_alwa_weights_the_gained_cls_box_pair_and_leaves_the_logged_items(yolov8n):
    reference_criterion = yolov8n.init_criterion()
    alwa = alwa_ext.ALWA(mode="alwa2", interval=2, cls_weight=0.5)
    criterion = AlwaDetectionLoss(yolov8n, alwa=alwa)
    recorded = []
    for step, seed in enumerate((3, 4, 5)):
        batch = make_batch(seed)
        preds = yolov8n(batch["img"])
        (plain, plain_items), (weighted, items) = reference_criterion(preds, batch), criterion(preds, batch)
        lam = 0.5 if step < 2 else alwa2_lambda([0.5 * c for c, _ in recorded], [b for _, b in recorded], current=0.5)
        # loss = (λreg·box, λcls·cls, dfl) x batch size, on ultralytics' gained values
        torch.testing.assert_close(weighted, plain * torch.tensor([1.0, lam, 1.0]), rtol=1e-5, atol=1e-6)
        for key in plain_items:  # logged: gained, unweighted
            torch.testing.assert_close(items[key], plain_items[key], rtol=1e-5, atol=1e-6)
        recorded.append((plain_items["cls_loss"].item(), plain_items["box_loss"].item()))
    assert (alwa.step.item(), alwa.num_updates.item()) == (3, 1)


def test_alwa_on_an_end_to_end_head_is_called_once_per_iteration(yolo26n):
    alwa = alwa_ext.ALWA(interval=5, cls_weight=0.25)
    batch = make_batch()
    preds = yolo26n(batch["img"])
    plain, _ = yolo26n.init_criterion()(preds, batch)
    weighted, _ = AlwaE2EDetectionLoss(yolo26n, alwa=alwa)(preds, batch)
    torch.testing.assert_close(weighted, plain * torch.tensor([1.0, 0.25, 1.0]), rtol=1e-5, atol=1e-6)
    assert alwa.step.item() == 1


def test_fused_bbox_loss_and_alwa_read_nothing_back_from_the_device():
    inputs = bbox_loss_inputs(16)
    inputs[0].requires_grad_()
    inputs[1].requires_grad_()
    meta = to_meta(inputs)
    with pytest.raises((RuntimeError, NotImplementedError)):
        BboxLoss(16)(*meta)  # ultralytics selects the foreground with nonzero: the control
    for reg_max in (16, 1):
        meta = to_meta(bbox_loss_inputs(reg_max))
        meta[0].requires_grad_()
        meta[1].requires_grad_()
        criterion, alwa = FusedBboxLoss(reg_max, "ciou"), alwa_ext.ALWA(interval=2).to("meta")
        cls_loss = torch.ones((), device="meta")
        with no_host_transfers():
            for _ in range(2):  # the second call closes ALWA's window
                loss_iou, loss_dfl = criterion(*meta)
                weighted = alwa(cls_loss, loss_iou)
                (loss_dfl + sum(weighted)).backward()
        assert loss_iou.device.type == loss_dfl.device.type == "meta" and meta[0].grad.shape == meta[0].shape


def test_the_fused_loss_stage_reads_nothing_back_from_the_device(yolov8n):
    # Everything after ultralytics' own preprocess (whose padding reads the box counts back):
    # the assignment, the BCE and the box terms, on meta tensors.
    criterion = AlwaDetectionLoss(yolov8n)
    batch = scene_batch(21, 64, (2, 1))
    inputs = assigner_inputs(v8DetectionLoss(yolov8n), yolov8n(batch["img"]), batch)
    meta = to_meta(list(inputs))
    with no_host_transfers():
        labels, boxes, scores, fg, idx = criterion.assigner(*meta)
        logits = torch.zeros(scores.shape, device="meta", requires_grad=True)
        loss_cls = alwa_ext.sigmoid_focal_loss(logits, scores, alpha=None, gamma=0.0, reduction="sum")
        dist = torch.zeros(*scores.shape[:2], 4, 16, device="meta", requires_grad=True)
        loss_dfl = alwa_ext.distribution_focal_loss(dist, torch.zeros(dist.shape[:-1], device="meta"),
                                                    weight=scores.sum(-1), reduction="sum")
        (loss_cls + loss_dfl).backward()
    assert labels.device.type == fg.device.type == "meta" and logits.grad.shape == logits.shape


def test_bad_configuration_raises_errors_naming_it(yolov8n):
    with pytest.raises(ValueError, match="loss"):
        AlwaDetectionTrainer.configure(box_loss="l1")  # the box term compares boxes: IoU kinds
    with pytest.raises(ValueError, match="mode"):
        AlwaDetectionTrainer.configure(alwa={"mode": "alwa3"})
    with pytest.raises(ValueError, match="interval"):
        AlwaDetectionTrainer.configure(alwa={"interval": 1})
    with pytest.raises(TypeError, match="alwa"):
        AlwaDetectionTrainer.configure(alwa="alwa2")
    with pytest.raises(TypeError, match="beta"):
        AlwaDetectionTrainer.configure(box_loss="ciou", beta=0.5)
    with pytest.raises(ValueError, match="alpha"):
        AlwaDetectionTrainer.configure(box_loss="eiou", alpha=3.0)
    with pytest.raises(TypeError, match="alwa"):
        AlwaDetectionLoss(yolov8n, alwa=object())
    with pytest.raises(TypeError, match="model"):
        build_criterion(torch.nn.Linear(2, 2))
    configured = AlwaDetectionTrainer.configure(box_loss="siou", alwa=None, eps=1e-6)
    assert issubclass(configured, AlwaDetectionTrainer)
    assert (configured.box_loss, configured.box_loss_options, configured.alwa_options) == ("siou", {"eps": 1e-6}, None)
    assert AlwaDetectionTrainer.box_loss == "ciou"  # the base class keeps its defaults


# --------------------------------------------------------------------------- training and resume


class Interrupted(Exception):
    """Stands for a run killed after its first checkpoint."""


def clone_state(alwa):
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in alwa.state_dict().items()}


def assert_same_state(actual, expected):
    assert list(actual) == list(expected)
    for key in expected:
        if isinstance(expected[key], torch.Tensor):
            torch.testing.assert_close(actual[key].cpu(), expected[key].cpu(), rtol=0, atol=0)
        else:
            assert actual[key] == expected[key]


@pytest.mark.slow
def test_a_short_training_run_saves_alwa_in_the_checkpoint_and_resume_continues_it(tmp_path, monkeypatch):
    from ultralytics import YOLO
    from ultralytics.data import utils as data_utils

    monkeypatch.setattr(data_utils, "check_font", lambda *args, **kwargs: None)  # would download Arial.ttf
    data = write_yolo_dataset(tmp_path / "data")
    trainer = AlwaDetectionTrainer.configure(box_loss="eiou", alwa={"mode": "alwa2", "interval": 2})
    train_args = dict(
        data=str(data), epochs=2, imgsz=64, batch=2, nbs=2, workers=0, device="cpu", plots=False, val=False,
        amp=False, pretrained=False, seed=0, close_mosaic=0, warmup_epochs=0, project=str(tmp_path / "runs"),
        name="alwa", exist_ok=True, verbose=False,
    )
    seen = {}

    def interrupt_after_the_first_checkpoint(trainer):
        seen["criterion"] = type(trainer.model.criterion)
        seen["saved"] = clone_state(trainer.alwa)
        raise Interrupted

    first = YOLO("yolov8n.yaml")
    first.add_callback("on_model_save", interrupt_after_the_first_checkpoint)
    with pytest.raises(Interrupted):
        first.train(trainer=trainer, **train_args)

    assert seen["criterion"] is AlwaDetectionLoss
    saved = seen["saved"]
    assert (saved["step"].item(), saved["num_updates"].item()) == (2, 1)  # 4 images / batch 2: one window
    last = tmp_path / "runs" / "alwa" / "weights" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert type(ckpt["ema"]) is DetectionModel and getattr(ckpt["ema"], "criterion", None) is None  # a plain ultralytics checkpoint
    state = getattr(ckpt["ema"], CHECKPOINT_ATTRIBUTE)
    assert (state["box_loss"], state["alwa_options"]) == ("eiou", {"mode": "alwa2", "interval": 2})
    assert_same_state(state["alwa"], saved)
    # ultralytics' weights-only loader (an allow-list of its own classes) takes it: nothing of
    # alwa_ext is pickled in the checkpoint.
    from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

    assert _SafeLoad.SUPPORTED
    safe_ckpt, _ = torch_safe_load(str(last), safe_only=True)
    assert_same_state(getattr(safe_ckpt["ema"], CHECKPOINT_ATTRIBUTE)["alwa"], saved)
    header = (tmp_path / "runs" / "alwa" / "results.csv").read_text().splitlines()[0]
    assert "alwa/lambda_cls" in header

    def capture_restored(trainer):
        seen["restored"] = clone_state(trainer.alwa)

    def capture_final(trainer):
        seen["final"] = clone_state(trainer.alwa)
        seen["validation_criterion"] = trainer.ema.ema.criterion

    resumed = YOLO(str(last))
    resumed.add_callback("on_pretrain_routine_end", capture_restored)
    resumed.add_callback("on_train_end", capture_final)
    resumed.train(resume=True, trainer=trainer)
    assert_same_state(seen["restored"], saved)
    # 4 training iterations in all: the validation of the last epoch recorded nothing
    assert (seen["final"]["step"].item(), seen["final"]["num_updates"].item()) == (4, 2)
    validation_criterion = seen["validation_criterion"]
    assert isinstance(validation_criterion, AlwaDetectionLoss) and validation_criterion.alwa is None
    assert validation_criterion.bbox_loss.loss_kind == "eiou"
