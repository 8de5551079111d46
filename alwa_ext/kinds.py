"""The names and constants every layer shares: loss kinds, reductions, box formats, ALWA's
modes and rules, and the numbers their defaults are made of.

One place: the wrappers, the eager references, the nn modules, the harness, the tests and the
benchmarks all import from here (the C++ side parses the same strings in
csrc/box_loss_plan.cpp and csrc/alwa_update_checks.cpp).
"""
from __future__ import annotations

import torch

# --------------------------------------------------------------------------- box losses

# Kinds with a pairwise similarity (box_iou) and an Alpha-IoU form (box_loss's alpha).
ALPHA_IOU_KINDS = ("iou", "giou", "diou", "ciou")
# Kinds with one loss per box, computed from the two boxes' overlap.
IOU_KINDS = ALPHA_IOU_KINDS + ("eiou", "siou")
# Kinds with one loss per coordinate.
COORDINATE_KINDS = ("l1", "smooth_l1")
LOSS_KINDS = IOU_KINDS + COORDINATE_KINDS

REDUCTIONS = ("none", "mean", "sum")
# box_iou's formats; box_loss also takes deltas against anchors (mmdet's DeltaXYWHBBoxCoder).
BOX_FORMATS = ("xyxy", "cxcywh")
LOSS_BOX_FORMATS = BOX_FORMATS + ("deltas",)

# "mean" with avg_factor divides by avg_factor + float32's eps, as mmdet does (the kernels use
# the same constant, kAvgFactorEps in csrc/include/alwa/box_math.h).
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps

# DeltaXYWHBBoxCoder defaults: no normalisation, dw/dh clamped at |log(16 / 1000)|.
DEFAULT_DELTA_MEANS = (0.0, 0.0, 0.0, 0.0)
DEFAULT_DELTA_STDS = (1.0, 1.0, 1.0, 1.0)
DEFAULT_WH_RATIO_CLIP = 16 / 1000

# --------------------------------------------------------------------------- ALWA

# ALWA_1 compares mean + std of the windows, ALWA_2 the std alone.
ALWA_MODES = ("alwa1", "alwa2")
# "paper" records the weighted losses (the published code), "stable" the unweighted ones.
ALWA_UPDATES = ("paper", "stable")
