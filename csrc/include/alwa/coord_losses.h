// The coordinate-wise losses (L1, SmoothL1 with mmdet's beta convention), forward and
// backward, written once for every kernel.
#pragma once

#include "alwa/kinds.h"
#include "alwa/primitives.h"

namespace alwa {

// Loss of one coordinate; with kGrad also writes d loss / d pred (d / d target is its
// negative). A NaN difference gives a NaN gradient (sign() alone would give 0).
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T coord_loss(T pred, T target, T beta, T& grad_pred) {
  using namespace math;
  static_assert(K == LossKind::L1 || K == LossKind::SmoothL1, "coord_loss takes L1 or SmoothL1");
  const T diff = pred - target;
  const T abs_diff = abs_(diff);
  if constexpr (K == LossKind::L1) {
    if constexpr (kGrad) grad_pred = select(diff == diff, sign_(diff), diff);
    return abs_diff;
  } else {
    const auto quadratic = abs_diff < beta;
    if constexpr (kGrad) {
      grad_pred = select(diff == diff, select(quadratic, diff / beta, sign_(diff)), diff);
    }
    return select(quadratic, T(0.5) * diff * diff / beta, abs_diff - T(0.5) * beta);
  }
}

}  // namespace alwa
