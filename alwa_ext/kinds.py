"""The names and constants every layer shares: loss kinds, reductions, box formats, ALWA's
modes, rules and statistics, and the numbers their defaults are made of.

One place: the wrappers, the nn modules, the harness, the tests and the benchmarks all import
from here. The names come from the tables the C++ is built from (csrc/include/alwa/kinds.h,
csrc/common/reduction.h, csrc/include/alwa/alwa_update.h), which alwa_ext._C carries, so no
list is spelled twice.
"""
from __future__ import annotations

from . import _C

# --------------------------------------------------------------------------- box losses

# (name, title, one loss per box from the overlap, pairwise/Alpha-IoU form), in table order.
_LOSS_TABLE = _C.loss_kinds

LOSS_KINDS = tuple(name for name, _, _, _ in _LOSS_TABLE)
# How tables and figures write a kind: "CIoU", "SmoothL1".
LOSS_TITLES = {name: title for name, title, _, _ in _LOSS_TABLE}
# Kinds with one loss per box, computed from the two boxes' overlap.
IOU_KINDS = tuple(name for name, _, iou_family, _ in _LOSS_TABLE if iou_family)
# Kinds with a pairwise similarity (box_iou) and an Alpha-IoU form (box_loss's alpha).
ALPHA_IOU_KINDS = tuple(name for name, _, _, alpha_form in _LOSS_TABLE if alpha_form)
# Kinds with one loss per coordinate.
COORDINATE_KINDS = tuple(name for name, _, iou_family, _ in _LOSS_TABLE if not iou_family)

REDUCTIONS = _C.reductions
# box_iou's formats; box_loss also takes deltas against anchors (mmdet's DeltaXYWHBBoxCoder).
BOX_FORMATS = _C.pairwise_box_formats

# "mean" with avg_factor divides by avg_factor + float32's eps, as mmdet does.
AVG_FACTOR_EPS = _C.avg_factor_eps

# DeltaXYWHBBoxCoder defaults: no normalisation, dw/dh clamped at |log(16 / 1000)|.
DEFAULT_DELTA_MEANS = (0.0, 0.0, 0.0, 0.0)
DEFAULT_DELTA_STDS = (1.0, 1.0, 1.0, 1.0)
DEFAULT_WH_RATIO_CLIP = 16 / 1000

# --------------------------------------------------------------------------- ALWA

# ALWA_1 compares mean + spread of the windows, ALWA_2 the spread alone.
ALWA_MODES = _C.alwa_modes
# "paper" records the weighted losses (the published code), "stable" the unweighted ones.
ALWA_UPDATES = _C.alwa_updates
# The spread: "raw", the window's std (the paper's); "detrended", its std about the window's
# least-squares line.
ALWA_STATISTICS = _C.alwa_statistics
# The `window` state of alwa_ext.ALWA: (classification, regression) x its shifted sums.
ALWA_WINDOW_SHAPE = _C.alwa_window_shape
