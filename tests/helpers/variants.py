"""The loss variants the tests sweep: every kind as it is, and the options that take their own
code paths in the math header (Focal-EIoU, the Alpha-IoU powers above and below 1)."""
from __future__ import annotations

from alwa_ext.kinds import ALPHA_IOU_KINDS, IOU_KINDS, LOSS_KINDS

# (kind, box_loss keyword arguments)
OPTION_VARIANTS = [("eiou", {"focal_gamma": 0.5})] + [(kind, {"alpha": a}) for kind in ALPHA_IOU_KINDS for a in (3.0, 0.5)]
VARIANTS = [(kind, {}) for kind in LOSS_KINDS] + OPTION_VARIANTS
IOU_VARIANTS = [(kind, extra) for kind, extra in VARIANTS if kind in IOU_KINDS]


def variant_id(variant):
    """A test id: the kind, then its options (``giou-alpha=0.5``)."""
    kind, extra = variant
    return "-".join([kind] + [f"{k}={v}" for k, v in extra.items()])
