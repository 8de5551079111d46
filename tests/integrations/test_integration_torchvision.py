"""alwa_ext.integrations.torchvision against torchvision's own RetinaNet / FCOS losses."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch

torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402
from torchvision.models.detection import FCOS, RetinaNet  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.fcos import FCOSHead  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead  # noqa: E402

import alwa_ext  # noqa: E402
from helpers import reference  # noqa: E402
from alwa_ext.integrations.torchvision import (  # noqa: E402
    FusedFCOSHead,
    FusedRetinaNetClassificationHead,
    FusedRetinaNetRegressionHead,
    fuse_box_loss,
    fuse_focal_loss,
    weight_losses,
)
from integration_helpers import alwa2_lambda, no_host_transfers, single_thread, to_meta  # noqa: E402,F401

TORCHVISION_KINDS = ("l1", "smooth_l1", "giou", "diou", "ciou")
FLOAT32 = dict(rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- data


def random_boxes(n, generator, scale=100.0, min_size=4.0):
    xy = torch.rand(n, 2, generator=generator) * scale
    wh = torch.rand(n, 2, generator=generator) * scale / 2 + min_size
    return torch.cat([xy, xy + wh], dim=1)


def head_inputs(seed=0, gt_counts=(4, 0, 2), num_anchors=60):
    """Targets, anchors and match indices as a detector's compute_loss receives them: one image
    without gt, matches that include BELOW_LOW_THRESHOLD (-1) and BETWEEN_THRESHOLDS (-2)."""
    g = torch.Generator().manual_seed(seed)
    anchors = [random_boxes(num_anchors, g) for _ in gt_counts]
    targets, matched = [], []
    for count in gt_counts:
        targets.append({"boxes": random_boxes(count, g), "labels": torch.randint(0, 3, (count,), generator=g)})
        if count:
            matched.append(torch.randint(-2, count, (num_anchors,), generator=g))
        else:
            matched.append(torch.full((num_anchors,), -1, dtype=torch.int64))
    return targets, anchors, matched, g


def tiny_backbone(channels=32):
    """Two stride-8 / stride-16 levels, so RetinaNet / FCOS build and run in milliseconds."""

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, stride=8, padding=1), nn.ReLU())
            self.down = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
            self.out_channels = channels

        def forward(self, x):
            p3 = self.stem(x)
            return OrderedDict([("p3", p3), ("p4", self.down(p3))])

    return Backbone()


def tiny_retinanet(seed=0):
    torch.manual_seed(seed)
    anchors = AnchorGenerator(((16, 24, 32), (32, 48, 64)), ((0.5, 1.0, 2.0),) * 2)
    return RetinaNet(tiny_backbone(), num_classes=3, anchor_generator=anchors, min_size=96, max_size=96)


def tiny_fcos(seed=0):
    torch.manual_seed(seed)
    anchors = AnchorGenerator(((8,), (16,)), ((1.0,),) * 2)
    return FCOS(tiny_backbone(), num_classes=3, anchor_generator=anchors, min_size=96, max_size=96)


def images_and_targets(seed=0, count=2, size=96):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(count)]
    targets = [
        {"boxes": torch.tensor([[8.0, 10.0, 50.0, 60.0], [40.0, 30.0, 90.0, 80.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[20.0, 20.0, 70.0, 44.0]]), "labels": torch.tensor([0])},
    ][:count]
    return images, targets


def loss_and_grads(model, images, targets, parameters):
    losses = model(images, targets)
    grads = torch.autograd.grad(sum(losses.values()), parameters)
    return {k: v.detach() for k, v in losses.items()}, grads


# --------------------------------------------------------------------------- RetinaNet parity


@pytest.mark.parametrize("kind", TORCHVISION_KINDS)
def test_retinanet_head_loss_and_gradient_equal_torchvision(kind):
    targets, anchors, matched, g = head_inputs()
    deltas = torch.randn(3, 60, 4, generator=g) * 0.5
    head = RetinaNetRegressionHead(8, 9)
    head._loss_type = kind  # torchvision's (private) switch: the reference
    theirs = deltas.clone().requires_grad_()
    expected = head.compute_loss(targets, {"bbox_regression": theirs}, anchors, matched)
    expected.backward()

    fused = FusedRetinaNetRegressionHead.from_head(head, kind)
    ours = deltas.clone().requires_grad_()
    actual = fused.compute_loss(targets, {"bbox_regression": ours}, anchors, matched)
    actual.backward()
    assert expected.item() > 0
    torch.testing.assert_close(actual, expected, **FLOAT32)
    torch.testing.assert_close(ours.grad, theirs.grad, **FLOAT32)


def test_retinanet_dw_dh_far_below_the_clip_match_torchvision():
    # BoxCoder clamps dw/dh only from above: very negative dw must still give torchvision's
    # (tiny-box) loss and gradient, which the fused delta decoder (clamped both ways) would not.
    targets, anchors, matched, g = head_inputs(seed=1)
    deltas = torch.randn(3, 60, 4, generator=g)
    deltas[..., 2:] = -6.0
    head = RetinaNetRegressionHead(8, 9)
    head._loss_type = "giou"
    theirs, ours = deltas.clone().requires_grad_(), deltas.clone().requires_grad_()
    head.compute_loss(targets, {"bbox_regression": theirs}, anchors, matched).backward()
    FusedRetinaNetRegressionHead.from_head(head, "giou").compute_loss(
        targets, {"bbox_regression": ours}, anchors, matched
    ).backward()
    assert theirs.grad[..., 2:].abs().sum() > 0
    torch.testing.assert_close(ours.grad, theirs.grad, **FLOAT32)


@pytest.mark.parametrize(
    "kind, options", [("eiou", {}), ("eiou", {"focal_gamma": 0.5}), ("siou", {}), ("giou", {"alpha": 3.0}), ("iou", {})]
)
def test_retinanet_alwa_kinds_use_torchvision_decoding_and_normalisation(kind, options):
    # Reference: the eager tests/helpers/reference.py loss on the foreground boxes that torchvision's
    # BoxCoder decodes, normalised image by image as torchvision's RetinaNet does.
    targets, anchors, matched, g = head_inputs(seed=2)
    deltas = (torch.randn(3, 60, 4, generator=g) * 0.5).double()
    anchors = [a.double() for a in anchors]
    targets = [{**t, "boxes": t["boxes"].double()} for t in targets]
    head = RetinaNetRegressionHead(8, 9)
    per_image = []
    for t, d, a, m in zip(targets, deltas, anchors, matched):
        fg = torch.where(m >= 0)[0]
        boxes = head.box_coder.decode_single(d[fg], a[fg])
        per_image.append(reference.box_loss(boxes, t["boxes"][m[fg]], kind, reduction="sum", **options) / max(1, fg.numel()))
    expected = sum(per_image) / len(targets)
    actual = FusedRetinaNetRegressionHead.from_head(head, kind, **options).compute_loss(
        targets, {"bbox_regression": deltas}, anchors, matched
    )
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", TORCHVISION_KINDS)
def test_retinanet_model_loss_dict_and_head_gradients_equal_torchvision(kind):
    theirs = tiny_retinanet()
    theirs.head.regression_head._loss_type = kind
    ours = fuse_box_loss(copy.deepcopy(theirs), kind)
    images, targets = images_and_targets()
    expected, expected_grads = loss_and_grads(theirs, images, targets, list(theirs.head.parameters()))
    actual, actual_grads = loss_and_grads(ours, images, targets, list(ours.head.parameters()))
    assert list(actual) == list(expected) == ["classification", "bbox_regression"]
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **FLOAT32)
    assert any(g.abs().sum() > 0 for g in expected_grads)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- fused focal loss


def test_retinanet_classification_head_loss_and_gradient_equal_torchvision():
    # head_inputs has an image without gt and anchors between the thresholds (-2, ignored).
    targets, anchors, matched, g = head_inputs(seed=5)
    head = RetinaNetClassificationHead(8, 9, num_classes=3)
    logits = torch.randn(3, 60, 3, generator=g, dtype=torch.float64) * 3
    theirs = logits.clone().requires_grad_()
    expected = head.compute_loss(targets, {"cls_logits": theirs}, matched)
    expected.backward()
    ours = logits.clone().requires_grad_()
    fused = FusedRetinaNetClassificationHead.from_head(head)
    actual = fused.compute_loss(targets, {"cls_logits": ours}, matched)
    actual.backward()
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-12, atol=1e-14)
    assert (theirs.grad[matched_stack(matched) == -2] == 0).all() and expected > 0


def matched_stack(matched):
    return torch.stack(matched)


def test_retinanet_with_both_losses_fused_equals_torchvision():
    theirs = tiny_retinanet()
    theirs.head.regression_head._loss_type = "giou"
    ours = fuse_focal_loss(fuse_box_loss(copy.deepcopy(theirs), "giou"))
    assert isinstance(ours.head.classification_head, FusedRetinaNetClassificationHead)
    images, targets = images_and_targets()
    expected, expected_grads = loss_and_grads(theirs, images, targets, list(theirs.head.parameters()))
    actual, actual_grads = loss_and_grads(ours, images, targets, list(ours.head.parameters()))
    assert list(actual) == list(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **FLOAT32)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)
    # State dicts load both ways; the parameters are the same objects as before the swap.
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    model = tiny_retinanet()
    before = list(model.head.classification_head.parameters())
    fuse_focal_loss(model)
    assert all(a is b for a, b in zip(model.head.classification_head.parameters(), before))


def fcos_losses_and_grads(head, targets, anchors, matched, outputs):
    """A FCOS head's loss dict on fresh leaves of `outputs`, and the gradients of their sum."""
    leaves = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    losses = head.compute_loss(targets, leaves, anchors, matched)
    sum(losses.values()).backward()
    return losses, {k: leaf.grad for k, leaf in leaves.items()}


def test_fcos_with_the_fused_focal_loss_equals_torchvision():
    targets, anchors, matched, outputs = fcos_inputs()
    head = FCOSHead(32, 1, 4, num_convs=1)
    expected, expected_grads = fcos_losses_and_grads(head, targets, anchors, matched, outputs)
    model = tiny_fcos()
    model.head = head
    fuse_focal_loss(model)
    assert isinstance(model.head, FusedFCOSHead) and model.head.focal_options == {"alpha": 0.25, "gamma": 2.0}
    actual, actual_grads = fcos_losses_and_grads(model.head, targets, anchors, matched, outputs)
    torch.testing.assert_close(actual, expected, **FLOAT32)
    torch.testing.assert_close(actual_grads, expected_grads, **FLOAT32)


def test_fuse_focal_loss_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model: expected a torchvision RetinaNet or FCOS"):
        fuse_focal_loss(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        fuse_focal_loss(tiny_retinanet(), alpha=2.0)
    with pytest.raises(ValueError, match="gamma"):
        fuse_focal_loss(tiny_retinanet(), gamma=-1.0)


def test_fused_focal_loss_reads_nothing_back_from_the_device():
    targets, anchors, matched, g = head_inputs()
    logits = torch.randn(3, 60, 3, generator=g).requires_grad_()
    targets, matched, outputs = to_meta((targets, matched, {"cls_logits": logits}))
    head = RetinaNetClassificationHead(8, 9, num_classes=3)
    with pytest.raises((RuntimeError, NotImplementedError)):
        head.compute_loss(targets, outputs, matched)  # boolean indexing and max(1, count): the control
    fused = FusedRetinaNetClassificationHead.from_head(head)
    with no_host_transfers():
        loss = fused.compute_loss(targets, outputs, matched)
        loss.backward()
    assert loss.device.type == "meta" and loss.shape == ()


# --------------------------------------------------------------------------- FCOS parity


def fcos_inputs(seed=3, gt_counts=(3, 0, 2), num_anchors=50, num_classes=4):
    targets, anchors, matched, g = head_inputs(seed, gt_counts, num_anchors)
    # FCOS matches anchors whose centre lies inside the box; the rest are background (-1).
    for t, a, m in zip(targets, anchors, matched):
        m.clamp_(min=-1)
        if t["boxes"].shape[0]:
            fg = m >= 0
            box = t["boxes"][m.clamp(min=0)]
            centre = (box[:, :2] + box[:, 2:]) / 2
            # Foreground anchors centred in their box; background ones stay anywhere, so some
            # lie outside box 0 (torchvision's centre-ness target is NaN there, unused).
            a[fg] = torch.cat([centre - 3.0, centre + 3.0], 1)[fg]
            t["labels"] = torch.randint(0, num_classes, t["labels"].shape, generator=g)
    head_outputs = {
        "cls_logits": torch.randn(len(gt_counts), num_anchors, num_classes, generator=g),
        "bbox_regression": torch.rand(len(gt_counts), num_anchors, 4, generator=g) * 3,  # relu'd distances
        "bbox_ctrness": torch.randn(len(gt_counts), num_anchors, 1, generator=g),
    }
    return targets, anchors, matched, head_outputs


def test_fcos_head_loss_dict_and_gradients_equal_torchvision():
    targets, anchors, matched, outputs = fcos_inputs()
    head = FCOSHead(32, 1, 4, num_convs=1)
    expected, expected_grads = fcos_losses_and_grads(head, targets, anchors, matched, outputs)
    actual, actual_grads = fcos_losses_and_grads(FusedFCOSHead.from_head(head), targets, anchors, matched, outputs)
    assert list(actual) == list(expected)
    assert all(loss.item() > 0 for loss in expected.values())
    torch.testing.assert_close(actual, expected, **FLOAT32)
    torch.testing.assert_close(actual_grads, expected_grads, **FLOAT32)


def test_fcos_model_loss_dict_equals_torchvision():
    theirs = tiny_fcos()
    ours = fuse_box_loss(copy.deepcopy(theirs), "giou")
    images, targets = images_and_targets()
    expected, expected_grads = loss_and_grads(theirs, images, targets, list(theirs.head.parameters()))
    actual, actual_grads = loss_and_grads(ours, images, targets, list(ours.head.parameters()))
    assert list(actual) == ["classification", "bbox_regression", "bbox_ctrness"]
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **FLOAT32)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_fcos_takes_alwa_iou_kinds():
    targets, anchors, matched, outputs = fcos_inputs()
    fused = FusedFCOSHead.from_head(FCOSHead(32, 1, 4, num_convs=1), "siou")
    losses = fused.compute_loss(targets, outputs, anchors, matched)
    fg = torch.stack(matched) >= 0
    boxes = fused.box_coder.decode(outputs["bbox_regression"], torch.stack(anchors))
    gt = torch.stack([t["boxes"][m.clamp(min=0)] if t["boxes"].shape[0] else torch.zeros(50, 4) for t, m in zip(targets, matched)])
    expected = reference.box_loss(boxes[fg].double(), gt[fg].double(), "siou", reduction="sum") / fg.sum()
    torch.testing.assert_close(losses["bbox_regression"].double(), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- state and swapping


@pytest.mark.parametrize("build", [tiny_retinanet, tiny_fcos])
def test_state_dicts_load_both_ways_and_parameters_are_shared(build):
    plain = build(seed=0)
    parameters_before = list(plain.parameters())
    fused = fuse_box_loss(plain, "eiou")
    assert [p is q for p, q in zip(fused.parameters(), parameters_before)] == [True] * len(parameters_before)

    other_plain, other_fused = build(seed=1), fuse_box_loss(build(seed=2), "ciou")
    assert list(other_plain.state_dict()) == list(fused.state_dict())
    other_plain.load_state_dict(fused.state_dict())  # strict: fused -> torchvision
    other_fused.load_state_dict(other_plain.state_dict())  # torchvision -> fused
    for a, b in zip(other_fused.state_dict().values(), fused.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fuse_again_changes_the_loss_and_the_old_head_is_untouched():
    model = tiny_retinanet()
    original = model.head.regression_head
    fuse_box_loss(model, "giou")
    fuse_box_loss(model, "smooth_l1", beta=0.5)
    head = model.head.regression_head
    assert type(original) is RetinaNetRegressionHead and original._loss_type == "l1"
    assert (head.loss_kind, head.loss_options) == ("smooth_l1", {"beta": 0.5})
    assert "smooth_l1" in repr(head)


def test_bad_arguments_raise_errors_naming_them():
    with pytest.raises(TypeError, match="model"):
        fuse_box_loss(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="loss"):
        fuse_box_loss(tiny_retinanet(), "wiou")
    with pytest.raises(ValueError, match="loss"):
        fuse_box_loss(tiny_fcos(), "l1")  # FCOS regresses distances decoded to boxes: IoU kinds
    with pytest.raises(ValueError, match="beta"):
        fuse_box_loss(tiny_retinanet(), "smooth_l1", beta=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        fuse_box_loss(tiny_retinanet(), "l1", alpha=2.0)
    with pytest.raises(TypeError, match="box_format"):
        fuse_box_loss(tiny_retinanet(), "giou", box_format="cxcywh")
    with pytest.raises(TypeError, match="head"):
        FusedRetinaNetRegressionHead.from_head(nn.Linear(2, 2))


@pytest.mark.parametrize("kind", ["l1", "smooth_l1", "iou", "giou", "diou", "ciou", "eiou", "siou"])
def test_nan_in_a_foreground_prediction_gives_nan_out(kind):
    targets, anchors, matched, g = head_inputs()
    deltas = torch.randn(3, 60, 4, generator=g)
    image, anchor = (torch.stack(matched) >= 0).nonzero()[0]
    deltas[image, anchor, 0] = float("nan")
    loss = FusedRetinaNetRegressionHead(8, 9, loss=kind).compute_loss(targets, {"bbox_regression": deltas}, anchors, matched)
    assert loss.isnan()


# --------------------------------------------------------------------------- no host sync


def test_fused_losses_read_nothing_back_from_the_device():
    """On meta tensors every host read raises, and no_host_transfers() fails on any copy of
    host data to the device: torchvision's own losses fail there, ours run."""
    targets, anchors, matched, g = head_inputs()
    deltas = (torch.randn(3, 60, 4, generator=g)).requires_grad_()
    targets, anchors, matched, outputs = to_meta((targets, anchors, matched, {"bbox_regression": deltas}))
    plain = RetinaNetRegressionHead(8, 9)
    with pytest.raises((RuntimeError, NotImplementedError)):
        plain.compute_loss(targets, outputs, anchors, matched)  # nonzero: the control
    plain.box_coder.weights = (10.0, 10.0, 5.0, 5.0)  # the R-CNN heads' weights
    with pytest.raises(AssertionError, match="torch.tensor"), no_host_transfers():
        plain.box_coder.decode_single(outputs["bbox_regression"][0], anchors[0])  # copies 0.5 to the device
    for kind in ("l1", "smooth_l1", "ciou", "siou"):
        fused = FusedRetinaNetRegressionHead.from_head(plain, kind)
        with no_host_transfers():
            loss = fused.compute_loss(targets, outputs, anchors, matched)
            loss.backward()
        assert loss.device.type == "meta" and loss.shape == ()

    targets, anchors, matched, outputs = fcos_inputs()
    targets, anchors, matched, outputs = to_meta((targets, anchors, matched, {k: v.requires_grad_() for k, v in outputs.items()}))
    head = FCOSHead(32, 1, 4, num_convs=1)
    with pytest.raises((RuntimeError, NotImplementedError)):
        head.compute_loss(targets, outputs, anchors, matched)  # .item() of the foreground count
    fused = FusedFCOSHead.from_head(head, "ciou")
    with no_host_transfers():
        losses = fused.compute_loss(targets, outputs, anchors, matched)
        sum(losses.values()).backward()
    assert all(v.device.type == "meta" for v in losses.values())

    alwa = alwa_ext.ALWA(interval=2).to("meta")
    losses = to_meta({"classification": torch.tensor(1.0), "bbox_regression": torch.tensor(0.5)})
    with no_host_transfers():
        weighted = weight_losses(losses, alwa)
        weighted = weight_losses(losses, alwa)  # the update iteration
    assert all(v.device.type == "meta" for v in weighted.values())


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.3, 0.7, 3.0, 1.5)])
def test_box_coding_matches_torchvision_bit_for_bit(weights):
    # The adapter transcribes BoxCoder's arithmetic without its host-to-device copies.
    from alwa_ext.integrations._torchvision_heads import _decode, _encode

    g = torch.Generator().manual_seed(9)
    coder = RetinaNetRegressionHead(8, 1).box_coder
    coder.weights = weights
    anchors, boxes = random_boxes(500, g), random_boxes(500, g)
    deltas = torch.randn(500, 4, generator=g) * 3  # some dw, dh beyond bbox_xform_clip
    assert torch.equal(_decode(coder, deltas, anchors), coder.decode_single(deltas, anchors))
    assert torch.equal(_encode(coder, boxes, anchors), coder.encode_single(boxes, anchors))


# --------------------------------------------------------------------------- weight_losses


def test_weight_losses_weights_the_preset_pair_and_passes_the_rest():
    alwa = alwa_ext.ALWA(interval=2)
    f64 = dict(dtype=torch.float64)
    dense = {"classification": torch.tensor(2.0, **f64), "bbox_regression": torch.tensor(0.5, **f64), "bbox_ctrness": torch.tensor(0.7)}
    out = weight_losses(dense, alwa)
    assert list(out) == list(dense) and out["bbox_ctrness"] is dense["bbox_ctrness"]
    torch.testing.assert_close(out["classification"], dense["classification"])  # λ = 1 before the first update
    weight_losses({"classification": torch.tensor(3.0, **f64), "bbox_regression": torch.tensor(0.6, **f64)}, alwa)
    lam = alwa2_lambda([2.0, 3.0], [0.5, 0.6])
    assert alwa.weights[0].item() == pytest.approx(lam, rel=1e-12) and lam < 1
    out = weight_losses(dense, alwa)
    torch.testing.assert_close(out["classification"], torch.tensor(2.0 * lam, **f64))
    torch.testing.assert_close(out["bbox_regression"], dense["bbox_regression"])

    rcnn = {k: torch.tensor(v) for k, v in [("loss_classifier", 1.0), ("loss_box_reg", 2.0), ("loss_objectness", 3.0), ("loss_rpn_box_reg", 4.0)]}
    out = weight_losses(rcnn, alwa_ext.ALWA(cls_weight=0.5))
    assert [out[k].item() for k in rcnn] == [1.0, 2.0, 1.5, 4.0]
    out = weight_losses(rcnn, alwa_ext.ALWA(cls_weight=0.5), keys=("loss_classifier", "loss_box_reg"))
    assert [out[k].item() for k in rcnn] == [0.5, 2.0, 3.0, 4.0]


def test_weight_losses_rejects_bad_input():
    losses = {"classification": torch.tensor(1.0), "bbox_regression": torch.tensor(1.0)}
    with pytest.raises(TypeError, match="alwa"):
        weight_losses(losses, object())
    with pytest.raises(TypeError, match="loss_dict"):
        weight_losses([torch.tensor(1.0)], alwa_ext.ALWA())
    with pytest.raises(ValueError, match="keys"):
        weight_losses({"a": torch.tensor(1.0)}, alwa_ext.ALWA())
    with pytest.raises(ValueError, match="keys"):
        weight_losses(losses, alwa_ext.ALWA(), keys=("classification", "nope"))
    with pytest.raises(ValueError, match="keys"):
        weight_losses(losses, alwa_ext.ALWA(), keys=("classification", "classification"))
    with pytest.raises(ValueError, match="bbox_regression"):
        weight_losses({"classification": torch.tensor(1.0), "bbox_regression": torch.ones(3)}, alwa_ext.ALWA())


# --------------------------------------------------------------------------- training


def training_batch(seed, size, count=2):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(count)]
    targets = []
    for _ in range(count):
        xy = torch.rand(2, 2, generator=g) * size * 0.5
        wh = torch.rand(2, 2, generator=g) * size * 0.4 + size * 0.1
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 3, (2,), generator=g)})
    return images, targets


def train_steps(model, keys, steps=3, size=128):
    """SGD steps on weight_losses(model(...)); returns ALWA and each step's raw pair."""
    alwa = alwa_ext.ALWA(mode="alwa2", interval=2)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    raw = []
    for step in range(steps):
        images, targets = training_batch(step, size)
        losses = model(images, targets)
        lam_before = alwa.weights[0].item()
        weighted = weight_losses(losses, alwa)
        for key in losses:
            expected = losses[key] * (lam_before if key == keys[0] else 1.0)
            torch.testing.assert_close(weighted[key], expected)
        optimizer.zero_grad()
        sum(weighted.values()).backward()
        optimizer.step()
        raw.append((losses[keys[0]].item(), losses[keys[1]].item()))
        assert all(torch.isfinite(v) for v in weighted.values())
    return alwa, raw


@pytest.mark.slow
def test_retinanet_resnet50_trains_with_a_fused_loss_and_alwa():
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(0)
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, min_size=128, max_size=128)
    fuse_box_loss(model, "eiou")
    before = model.head.regression_head.bbox_reg.weight.detach().clone()
    alwa, raw = train_steps(model, ("classification", "bbox_regression"))
    assert (alwa.step.item(), alwa.num_updates.item(), alwa.skipped.item()) == (3, 1, 0)
    expected = alwa2_lambda([raw[0][0], raw[1][0]], [raw[0][1], raw[1][1]])
    assert alwa.weights[0].item() == pytest.approx(expected, rel=1e-6)
    assert not torch.equal(model.head.regression_head.bbox_reg.weight, before)


@pytest.mark.slow
def test_faster_rcnn_mobilenet_trains_with_alwa_on_its_rpn():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=128, max_size=128,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64,
    )
    alwa, raw = train_steps(model, ("loss_objectness", "loss_rpn_box_reg"))
    assert (alwa.step.item(), alwa.num_updates.item()) == (3, 1)
    expected = alwa2_lambda([raw[0][0], raw[1][0]], [raw[0][1], raw[1][1]])
    assert alwa.weights[0].item() == pytest.approx(expected, rel=1e-6)
