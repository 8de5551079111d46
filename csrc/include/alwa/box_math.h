// The box-regression math, forward and analytic backward, written once: what every CPU and CUDA
// kernel includes. It is torch-free and compiles with nvcc or a host compiler alone. `T` is the
// compute type: float (also for half/bfloat16 storage) or double; a SIMD type with overloads of
// the primitives (primitives.h) instantiates the same code.
//
//   kinds.h             LossKind, BoxFormat (Reduction: common/reduction.h)
//   primitives.h        select, min_/max_, safe_div, ... and their backward helpers
//   box_geometry.h      scaling of a pair, intersection/union/enclosing box/centres, backward
//   iou_losses.h        one function per IoU-family term; iou_loss_xyxy composes them
//   coord_losses.h      L1, SmoothL1
//   deltas.h            DeltaXYWHBBoxCoder decode/encode and their backward
//   box_loss_element.h  BoxLossArgs, loads and stores, box i of a call
#pragma once

#include "alwa/box_loss_element.h"
