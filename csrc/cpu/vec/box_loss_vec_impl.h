// The vector box_loss driver, written once over the SIMD vectors of simd.h: W = V::kWidth boxes
// at a time, the per-box math instantiated from alwa/box_math.h on V = Vec<Isa>.
// It mirrors box_loss_element (same weighting, outputs and gradient scaling; see there) for
// the kinds, formats and options listed in box_loss_vec_kernel(); box_loss_element stays the
// definition. Included once per ISA translation unit, after that ISA's isa_*.h.
//
// Everything here is a template on V, so each ISA's instantiations have their own names and
// no code compiled for one ISA can be picked by the linker for another.
#pragma once

#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "alwa/box_math.h"
#include "cpu/box_loss_vec.h"
#include "cpu/vec/atan2.h"
#include "cpu/vec/simd.h"

namespace alwa {
namespace vec {

// Number of fields of an aggregate (C++17: the largest n for which T{any, ..., any} compiles).
struct AnyField {
  template <class U>
  operator U() const;
};
template <class T, class Seq, class = void>
struct BraceInitWith : std::false_type {};
template <class T, size_t... I>
struct BraceInitWith<T, std::index_sequence<I...>,
                     std::void_t<decltype(T{(static_cast<void>(I), AnyField{})...})>>
    : std::true_type {};
template <class T, size_t N = 0>
constexpr size_t field_count() {
  if constexpr (BraceInitWith<T, std::make_index_sequence<N + 1>>::value) {
    return field_count<T, N + 1>();
  } else {
    return N;
  }
}
// The driver below handles exactly these fields of BoxLossArgs. A new one (a loss option)
// must be handled here, or refused in box_loss_vec_kernel() so such calls stay scalar.
static_assert(field_count<BoxLossArgs<float, float>>() == 17,
              "BoxLossArgs changed: teach csrc/cpu/vec/box_loss_vec_impl.h the new field (or "
              "refuse it in box_loss_vec_kernel), then update this count");

// Boxes i .. i + W - 1: outputs written, weighted losses added to `sum`.
template <LossKind K, bool kGrad, class V, class Sum>
ALWA_INLINE void box_loss_group(const BoxLossArgs<float, float>& args, int64_t i, float grad_scale,
                                Sum& sum) {
  V p[4], t[4];
  load_boxes(args.pred + 4 * i, p);
  load_boxes(args.target + 4 * i, t);
  if constexpr (is_iou_family(K)) {
    V weight(1.0f);
    if (args.weight != nullptr) {
      if (args.weight_per_coord) {
        V w[4];
        load_boxes(args.weight + 4 * i, w);
        weight = (w[0] + w[1] + w[2] + w[3]) * V(0.25f);
      } else {
        weight = V::load(args.weight + i);
      }
    }
    IoULossParams<V> params;  // plain losses only (see box_loss_vec_kernel)
    params.eps = V(args.iou.eps);
    params.alpha = V(1.0f);
    params.alpha_power = false;
    params.focal_gamma = V(0.0f);
    params.focal = false;
    V grad_p[4], grad_t[4];
    const V loss = iou_loss<K, kGrad>(p, t, args.format, params, grad_p, grad_t) * weight;
    if (args.loss != nullptr) loss.store(args.loss + i);
    if constexpr (kGrad) {
      V g = weight * V(grad_scale);
      if (args.upstream != nullptr && !args.reduce) g = g * V::load(args.upstream + i);
      if (args.grad_pred != nullptr) {
        for (int k = 0; k < 4; ++k) grad_p[k] = grad_p[k] * g;
        store_boxes(args.grad_pred + 4 * i, grad_p);
      }
      if (args.grad_target != nullptr) {
        for (int k = 0; k < 4; ++k) grad_t[k] = grad_t[k] * g;
        store_boxes(args.grad_target + 4 * i, grad_t);
      }
    }
    sum.add(loss);
  } else {
    V w[4] = {V(1.0f), V(1.0f), V(1.0f), V(1.0f)};
    if (args.weight != nullptr) {
      if (args.weight_per_coord) {
        load_boxes(args.weight + 4 * i, w);
      } else {
        const V box_weight = V::load(args.weight + i);
        for (int k = 0; k < 4; ++k) w[k] = box_weight;
      }
    }
    V loss[4], grad[4];
    V box_sum(0.0f);
    for (int k = 0; k < 4; ++k) {
      grad[k] = V(0.0f);
      loss[k] = coord_loss<K, kGrad>(p[k], t[k], V(args.beta), grad[k]) * w[k];
      box_sum += loss[k];
    }
    if (args.loss != nullptr) store_boxes(args.loss + 4 * i, loss);
    if constexpr (kGrad) {
      if (args.upstream != nullptr && !args.reduce) {
        V up[4];
        load_boxes(args.upstream + 4 * i, up);
        for (int k = 0; k < 4; ++k) w[k] = w[k] * up[k];
      }
      for (int k = 0; k < 4; ++k) grad[k] = grad[k] * w[k] * V(grad_scale);
      if (args.grad_pred != nullptr) store_boxes(args.grad_pred + 4 * i, grad);
      if (args.grad_target != nullptr) {
        for (int k = 0; k < 4; ++k) grad[k] = -grad[k];
        store_boxes(args.grad_target + 4 * i, grad);
      }
    }
    sum.add(box_sum);
  }
}

// Boxes [begin, end): whole groups in place; the last n < W boxes through padded copies, the
// padding lanes weighted 0 (their losses are finite, so they add exactly 0) and not written
// back. A missing weight becomes a per-box weight of 1 there, which changes no value.
template <LossKind K, bool kGrad, class V, class Sum>
double box_loss_range(const BoxLossArgs<float, float>& args, int64_t begin, int64_t end,
                      float grad_scale) {
  constexpr int W = V::kWidth;
  Sum sum;
  int64_t i = begin;
  for (; i + W <= end; i += W) box_loss_group<K, kGrad, V>(args, i, grad_scale, sum);
  if (i < end) {
    const int n = static_cast<int>(end - i);
    alignas(64) float pred[4 * W], target[4 * W], weight[4 * W], upstream[4 * W];
    alignas(64) float loss[4 * W], grad_pred[4 * W], grad_target[4 * W];
    for (int j = 0; j < W; ++j) {
      const float unit_box[4] = {0.0f, 0.0f, 1.0f, 1.0f};
      memcpy(pred + 4 * j, j < n ? args.pred + 4 * (i + j) : unit_box, sizeof(unit_box));
      memcpy(target + 4 * j, j < n ? args.target + 4 * (i + j) : unit_box, sizeof(unit_box));
    }
    const bool per_coord = args.weight != nullptr && args.weight_per_coord;
    const int weights_per_box = per_coord ? 4 : 1;
    for (int j = 0; j < weights_per_box * W; ++j) {
      const bool valid = j < weights_per_box * n;
      weight[j] = !valid ? 0.0f : args.weight != nullptr ? args.weight[weights_per_box * i + j] : 1.0f;
    }
    const bool per_element_upstream = args.upstream != nullptr && !args.reduce;
    const int upstream_per_box = is_iou_family(K) ? 1 : 4;
    if (per_element_upstream) {
      for (int j = 0; j < upstream_per_box * W; ++j) {
        upstream[j] = j < upstream_per_box * n ? args.upstream[upstream_per_box * i + j] : 0.0f;
      }
    }
    BoxLossArgs<float, float> tail = args;
    if (per_element_upstream) tail.upstream = upstream;
    tail.pred = pred;
    tail.target = target;
    tail.weight = weight;
    tail.weight_per_coord = per_coord;
    tail.loss = args.loss != nullptr ? loss : nullptr;
    tail.grad_pred = args.grad_pred != nullptr ? grad_pred : nullptr;
    tail.grad_target = args.grad_target != nullptr ? grad_target : nullptr;
    box_loss_group<K, kGrad, V>(tail, 0, grad_scale, sum);
    const int losses_per_box = is_iou_family(K) ? 1 : 4;
    if (args.loss != nullptr) memcpy(args.loss + losses_per_box * i, loss, sizeof(float) * losses_per_box * n);
    if (args.grad_pred != nullptr) memcpy(args.grad_pred + 4 * i, grad_pred, sizeof(float) * 4 * n);
    if (args.grad_target != nullptr) memcpy(args.grad_target + 4 * i, grad_target, sizeof(float) * 4 * n);
  }
  return sum.total();
}

// The kinds, formats and options vectorised: IoU, GIoU, DIoU, CIoU, L1 and SmoothL1 on xyxy or
// cxcywh boxes, without Alpha-IoU powers or focal factors. Anything else (deltas, EIoU, SIoU,
// kinds added later) returns nullptr and runs through the scalar box_loss_element.
template <class Isa>
cpu::BoxLossVecFn box_loss_vec_kernel(LossKind kind, const BoxLossArgs<float, float>& args, bool grad) {
  using V = Vec<Isa>;
  using Sum = DoubleSum<Isa>;
  if (args.format != BoxFormat::XYXY && args.format != BoxFormat::CXCYWH) return nullptr;
  if (args.anchors != nullptr || args.iou.alpha_power || args.iou.focal) return nullptr;
#define ALWA_VEC_KIND(KIND)                                                         \
  case LossKind::KIND:                                                              \
    return grad ? &box_loss_range<LossKind::KIND, true, V, Sum>                     \
                : &box_loss_range<LossKind::KIND, false, V, Sum>;
  switch (kind) {
    ALWA_VEC_KIND(IoU)
    ALWA_VEC_KIND(GIoU)
    ALWA_VEC_KIND(DIoU)
    ALWA_VEC_KIND(CIoU)
    ALWA_VEC_KIND(L1)
    ALWA_VEC_KIND(SmoothL1)
    default:
      return nullptr;
  }
#undef ALWA_VEC_KIND
}

}  // namespace vec
}  // namespace alwa
