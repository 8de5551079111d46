"""Bad arguments of box_loss and box_iou raise ValueError (TypeError for a non-tensor) naming
the argument: through the Python wrappers, and from C++ when torch.ops.alwa is called directly.

(ALWA's configuration and loss checks are in test_alwa.py.)
"""
from __future__ import annotations

import pytest
import torch

import alwa_ext
from helpers.boxes import box_pairs
from helpers.raw_ops import box_loss_op


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss="focal"), "loss: expected one of"),
        (dict(loss="wiou"), "loss: expected one of"),
        (dict(reduction="avg"), "reduction: expected one of"),
        (dict(box_format="xywh"), "box_format: expected one of"),
        (dict(beta=0.0), "beta: expected"),
        (dict(beta=float("nan")), "beta: expected"),
        (dict(eps=-1e-7), "eps: expected"),
        (dict(reduction="sum", avg_factor=2.0), "avg_factor: cannot be used with reduction='sum'"),
        (dict(avg_factor=torch.ones(2)), "avg_factor: expected a 0-dim tensor"),
        (dict(weight=torch.ones(7)), r"weight: expected shape \(5,\)"),
        (dict(weight=torch.ones(5, dtype=torch.int64)), "weight: expected a floating-point tensor"),
        (dict(loss="eiou", alpha=2.0), "alpha"),
        (dict(loss="giou", alpha=0.0), "alpha"),
        (dict(loss="giou", alpha=float("nan")), "alpha"),
        (dict(loss="giou", focal_gamma=1.0), "focal_gamma"),
        (dict(loss="eiou", focal_gamma=-1.0), "focal_gamma"),
        (dict(loss="giou", box_format="deltas"), "anchors"),
        (dict(loss="giou", anchors="same"), "anchors"),
        (dict(loss="giou", box_format="deltas", anchors="short"), "anchors"),
        (dict(loss="giou", box_format="deltas", anchors="same", delta_stds=(1, 1, 0, 1)), "delta_stds"),
        (dict(loss="giou", box_format="deltas", anchors="same", delta_means=(0, 0, 0)), "delta_means"),
        (dict(loss="giou", box_format="deltas", anchors="same", wh_ratio_clip=0.0), "wh_ratio_clip"),
        (dict(loss="l1", box_format="deltas", anchors="same", eps=0.0), "eps"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    pred, target = box_pairs(5, dtype=torch.float32)
    kwargs = dict(kwargs)
    if kwargs.get("anchors") == "same":
        kwargs["anchors"] = pred.clone()
    elif kwargs.get("anchors") == "short":
        kwargs["anchors"] = pred[:2].clone()
    with pytest.raises(ValueError, match=match):
        alwa_ext.box_loss(pred, target, **kwargs)


def test_bad_tensors_raise_value_error():
    pred, target = box_pairs(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"pred: expected boxes of shape \(\.\.\., 4\)"):
        alwa_ext.box_loss(pred[:, :3], target[:, :3])
    with pytest.raises(ValueError, match="target: expected the shape of pred"):
        alwa_ext.box_loss(pred, target[:4])
    with pytest.raises(ValueError, match="target: expected the dtype of pred"):
        alwa_ext.box_loss(pred, target.double())
    with pytest.raises(ValueError, match="pred: expected float32, float64, float16 or bfloat16"):
        alwa_ext.box_loss(pred.long(), target.long())
    with pytest.raises(ValueError, match="target: expected the device of pred"):
        alwa_ext.box_loss(pred, target.to("meta"))


def test_direct_op_calls_are_checked_in_cpp():
    # Bypassing the Python wrapper still gets a ValueError naming the argument.
    pred, target = box_pairs(5, dtype=torch.float32)
    with pytest.raises(ValueError, match="loss: expected one of"):
        box_loss_op(pred, target, "focal")
    with pytest.raises(ValueError, match="target: expected the shape of pred"):
        box_loss_op(pred, target[:2], "iou")
    with pytest.raises(ValueError, match="beta: expected"):
        box_loss_op(pred, target, "l1", beta=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        box_loss_op(pred, target, "siou", alpha=2.0)
    with pytest.raises(ValueError, match="anchors"):
        box_loss_op(pred, target, "giou", box_format="deltas")
    with pytest.raises(ValueError, match="box_format"):
        torch.ops.alwa.box_iou(pred, target, "iou", "deltas", 1e-7)
    with pytest.raises(ValueError, match="kind"):
        torch.ops.alwa.box_iou(pred, target, "siou", "xyxy", 1e-7)


def test_box_iou_bad_arguments():
    b = torch.rand(3, 4)
    with pytest.raises(ValueError, match="kind: expected one of"):
        alwa_ext.box_iou(b, b, "l1")
    with pytest.raises(ValueError, match=r"boxes1: expected shape \(M, 4\)"):
        alwa_ext.box_iou(b[None], b)
    with pytest.raises(ValueError, match="boxes2: expected the dtype of boxes1"):
        alwa_ext.box_iou(b, b.double())
    with pytest.raises(ValueError, match="eps: expected"):
        alwa_ext.box_iou(b, b, eps=-1.0)
