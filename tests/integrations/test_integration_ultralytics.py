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
from ultralytics.utils.loss import BboxLoss  # noqa: E402
from ultralytics.utils.metrics import bbox_iou  # noqa: E402

import alwa_ext  # noqa: E402
from helpers import reference  # noqa: E402
from alwa_ext.integrations.ultralytics import (  # noqa: E402
    CHECKPOINT_ATTRIBUTE,
    AlwaDetectionLoss,
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
