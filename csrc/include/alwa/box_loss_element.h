// The kernel plumbing of box_loss, shared by the CPU (scalar and SIMD) and CUDA kernels: the
// arguments of a call, how a box is loaded and its outputs stored, and box i's whole
// computation (decode, loss, weight, gradient scaling). The loss formulas are in
// iou_losses.h, coord_losses.h and deltas.h.
#pragma once

#include <stdint.h>

#include "alwa/coord_losses.h"
#include "alwa/deltas.h"
#include "alwa/iou_losses.h"
#include "common/reduction.h"
#include "common/storage.h"

namespace alwa {

// Everything a box_loss kernel reads and writes, decided on the host and passed by value.
// Pointers are to contiguous (N, 4) boxes; outputs that were not asked for are null.
template <class scalar_t, class T>
struct BoxLossArgs {
  const scalar_t* pred;     // boxes, or deltas for BoxFormat::Deltas
  const scalar_t* target;   // boxes (xyxy for BoxFormat::Deltas)
  const scalar_t* weight;   // null, (N) per box or (N, 4) per coordinate
  const scalar_t* anchors;  // (N, 4) xyxy for BoxFormat::Deltas, else null
  scalar_t* loss;           // per element for reduction "none", else null
  scalar_t* grad_pred;
  scalar_t* grad_target;
  // box_loss_backward: d output / d loss, per element for "none" (the loss's shape) or one
  // value otherwise; the gradients written are then the vector-Jacobian products. Null in the
  // forward, where the gradients are those of the loss itself.
  const scalar_t* upstream;
  int64_t num_boxes;
  BoxFormat format;
  bool weight_per_coord;
  // eps, Alpha-IoU's alpha and Focal-EIoU's gamma. eps also floors the widths and heights
  // when L1/SmoothL1 encode the target boxes as deltas.
  IoULossParams<T> iou;
  T beta;
  DeltaCoding<T> deltas;
  // d reduced loss / d element loss before avg_factor (common/reduction.h).
  T grad_scale;
  const double* avg_factor;
  bool reduce;  // "sum" or "mean": a single upstream value
};

// The factor that turns the sum of weighted element losses into the reduced loss.
template <class scalar_t, class T>
ALWA_HD_INLINE T reduction_scale(const BoxLossArgs<scalar_t, T>& args) {
  return reduction_scale(args.grad_scale, args.avg_factor);
}

// The factor on every element's gradient: the reduction's, times the upstream gradient when
// it is one value (reduced losses in box_loss_backward). Computed once per thread.
template <class scalar_t, class T>
ALWA_HD_INLINE T gradient_scale(const BoxLossArgs<scalar_t, T>& args) {
  const T scale = reduction_scale(args);
  return args.upstream != nullptr && args.reduce ? scale * static_cast<T>(args.upstream[0]) : scale;
}

template <class T, class scalar_t>
ALWA_HD_INLINE void load_box(const scalar_t* src, T (&box)[4]) {
  for (int k = 0; k < 4; ++k) box[k] = static_cast<T>(src[k]);
}

// A gradient of four coordinates times `scale`, saturated to the storage range.
template <class T, class scalar_t>
ALWA_HD_INLINE void store_grad(const T (&grad)[4], T scale, scalar_t* dst) {
  for (int k = 0; k < 4; ++k) dst[k] = saturating_cast<scalar_t>(grad[k] * scale);
}

// How box_loss_element reads a box: load_box by default; a backend may pass its own loader
// (the CUDA kernels pass one that uses vector loads where the host found the inputs aligned).
struct ScalarBoxLoader {
  template <class T, class scalar_t>
  ALWA_HD_INLINE void operator()(const scalar_t* src, T (&box)[4]) const {
    load_box(src, box);
  }
};

// Box i of a box_loss call: writes its per-element losses (reduction "none") and gradients
// (kGrad), and returns the sum of its weighted element losses (for "sum"/"mean").
// grad_scale is gradient_scale(args), computed once per thread by the caller.
//
// With BoxFormat::Deltas, IoU-family kinds decode the deltas against the anchor and compare the
// decoded box with the target box; L1/SmoothL1 compare the deltas with the target box encoded
// against the anchor (mmdet's default pipeline, where L1 acts on the regression targets).
// Either way the gradients are w.r.t. the deltas and the target box.
template <LossKind K, bool kGrad, class scalar_t, class T, class Loader = ScalarBoxLoader>
ALWA_HD_INLINE T box_loss_element(const BoxLossArgs<scalar_t, T>& args, int64_t i, T grad_scale,
                                  Loader load = {}) {
  T p[4], t[4], anchor[4] = {T(0), T(0), T(0), T(0)};
  load(args.pred + 4 * i, p);
  load(args.target + 4 * i, t);
  const bool deltas = args.format == BoxFormat::Deltas;  // uniform over the call
  if (deltas) load_box(args.anchors + 4 * i, anchor);
  const scalar_t* w = args.weight;
  // The upstream gradient of element e, where there is one per element.
  const bool per_element_upstream = args.upstream != nullptr && !args.reduce;
  T grad_p[4], grad_t[4];
  if constexpr (is_iou_family(K)) {
    T weight = T(1);
    if (w != nullptr) {
      weight = args.weight_per_coord
                   ? (T(w[4 * i]) + T(w[4 * i + 1]) + T(w[4 * i + 2]) + T(w[4 * i + 3])) * T(0.25)
                   : T(w[i]);
    }
    T loss;
    if (deltas) {
      T box[4];
      decode_deltas(p, anchor, args.deltas, box);
      loss = iou_loss_xyxy<K, kGrad>(box, t, args.iou, grad_p, grad_t);
      if constexpr (kGrad) decode_deltas_backward(p, anchor, args.deltas, grad_p);
    } else {
      loss = iou_loss<K, kGrad>(p, t, args.format, args.iou, grad_p, grad_t);
    }
    loss *= weight;
    if (args.loss != nullptr) args.loss[i] = saturating_cast<scalar_t>(loss);
    if constexpr (kGrad) {
      T g = weight * grad_scale;
      if (per_element_upstream) g *= static_cast<T>(args.upstream[i]);
      if (args.grad_pred != nullptr) store_grad(grad_p, g, args.grad_pred + 4 * i);
      if (args.grad_target != nullptr) store_grad(grad_t, g, args.grad_target + 4 * i);
    }
    return loss;
  } else {
    T t_coded[4];
    if (deltas) {
      encode_deltas(t, anchor, args.deltas, args.iou.eps, t_coded);
    } else {
      for (int k = 0; k < 4; ++k) t_coded[k] = t[k];
    }
    T box_sum = T(0);
    for (int k = 0; k < 4; ++k) {
      T weight = T(1);
      if (w != nullptr) weight = T(w[args.weight_per_coord ? 4 * i + k : i]);
      T grad = T(0);
      const T loss = coord_loss<K, kGrad>(p[k], t_coded[k], args.beta, grad) * weight;
      if (args.loss != nullptr) args.loss[4 * i + k] = saturating_cast<scalar_t>(loss);
      box_sum += loss;
      if (per_element_upstream) weight *= static_cast<T>(args.upstream[4 * i + k]);
      grad_p[k] = grad * weight;
      grad_t[k] = -grad_p[k];
    }
    if constexpr (kGrad) {
      if (args.grad_pred != nullptr) store_grad(grad_p, grad_scale, args.grad_pred + 4 * i);
      if (args.grad_target != nullptr) {
        if (deltas) encode_deltas_backward(t, anchor, args.deltas, args.iou.eps, grad_t);
        store_grad(grad_t, grad_scale, args.grad_target + 4 * i);
      }
    }
    return box_sum;
  }
}

}  // namespace alwa
