// The loss kinds, box formats and reductions, as the kernels know them (the strings users
// pass are parsed in box_loss_plan.cpp; alwa_ext/kinds.py lists the same names).
#pragma once

#include "alwa/macros.h"

namespace alwa {

enum class LossKind : int {
  IoU = 0,
  GIoU = 1,
  DIoU = 2,
  CIoU = 3,
  L1 = 4,
  SmoothL1 = 5,
  EIoU = 6,
  SIoU = 7,
};
// Deltas: pred holds mmdet DeltaXYWHBBoxCoder deltas against per-box anchors (xyxy), target
// holds xyxy boxes.
enum class BoxFormat : int { XYXY = 0, CXCYWH = 1, Deltas = 2 };
enum class Reduction : int { None = 0, Sum = 1, Mean = 2 };

// One loss per box, computed from the overlap of the two boxes (every kind but L1/SmoothL1).
ALWA_HOST_DEVICE constexpr bool is_iou_family(LossKind kind) {
  return kind == LossKind::IoU || kind == LossKind::GIoU || kind == LossKind::DIoU ||
         kind == LossKind::CIoU || kind == LossKind::EIoU || kind == LossKind::SIoU;
}
// Kinds with a pairwise similarity (box_iou) and an Alpha-IoU form.
ALWA_HOST_DEVICE constexpr bool has_alpha_form(LossKind kind) {
  return kind == LossKind::IoU || kind == LossKind::GIoU || kind == LossKind::DIoU ||
         kind == LossKind::CIoU;
}

// Float eps that mmdet adds to avg_factor ("mean" divides by avg_factor + eps).
constexpr double kAvgFactorEps = 1.1920928955078125e-07;

}  // namespace alwa
