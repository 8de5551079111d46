// mmdet's DeltaXYWHBBoxCoder, forward and backward, written once for every kernel: deltas
// (dx, dy, dw, dh) of a box against an anchor (xyxy), with dx = ((gx - ax) / aw - mean0) / std0
// and dw = (log(gw / aw) - mean2) / std2, and likewise for y and h. Decoding clamps the
// denormalised dw, dh to +-max_log_ratio.
#pragma once

#include "alwa/primitives.h"

namespace alwa {

template <class T>
struct DeltaCoding {
  T means[4];
  T stds[4];
  T max_log_ratio;  // |log(wh_ratio_clip)|
};

// Denormalised delta k (dw for k = 2, dh for k = 3 before the clamp).
template <class T>
ALWA_HD_INLINE T denormalised_delta(const T (&delta)[4], const DeltaCoding<T>& coding, int k) {
  return delta[k] * coding.stds[k] + coding.means[k];
}

template <class T>
ALWA_HD_INLINE void decode_deltas(const T (&delta)[4], const T (&anchor)[4],
                                  const DeltaCoding<T>& coding, T (&box)[4]) {
  using namespace math;
  const T half(0.5);
  const T aw = anchor[2] - anchor[0], ah = anchor[3] - anchor[1];
  const T ax = half * (anchor[0] + anchor[2]), ay = half * (anchor[1] + anchor[3]);
  const T lim = coding.max_log_ratio;
  const T dw = min_(max_(denormalised_delta(delta, coding, 2), -lim), lim);
  const T dh = min_(max_(denormalised_delta(delta, coding, 3), -lim), lim);
  const T cx = ax + aw * denormalised_delta(delta, coding, 0);
  const T cy = ay + ah * denormalised_delta(delta, coding, 1);
  const T w = aw * exp_(dw), h = ah * exp_(dh);
  box[0] = cx - half * w;
  box[1] = cy - half * h;
  box[2] = cx + half * w;
  box[3] = cy + half * h;
}

// Chain rule through decode_deltas: `grad` holds d loss / d box (xyxy) and becomes
// d loss / d delta, in place.
template <class T>
ALWA_HD_INLINE void decode_deltas_backward(const T (&delta)[4], const T (&anchor)[4],
                                           const DeltaCoding<T>& coding, T (&grad)[4]) {
  using namespace math;
  const T half(0.5);
  const T aw = anchor[2] - anchor[0], ah = anchor[3] - anchor[1];
  const T lim = coding.max_log_ratio;
  const T dw_raw = denormalised_delta(delta, coding, 2);
  const T dh_raw = denormalised_delta(delta, coding, 3);
  const T w = aw * exp_(min_(max_(dw_raw, -lim), lim));
  const T h = ah * exp_(min_(max_(dh_raw, -lim), lim));
  const T g_cx = grad[0] + grad[2], g_cy = grad[1] + grad[3];
  const T g_w = half * (grad[2] - grad[0]), g_h = half * (grad[3] - grad[1]);
  grad[0] = g_cx * aw * coding.stds[0];
  grad[1] = g_cy * ah * coding.stds[1];
  grad[2] = clamp_backward(dw_raw, -lim, lim, g_w * w) * coding.stds[2];
  grad[3] = clamp_backward(dh_raw, -lim, lim, g_h * h) * coding.stds[3];
}

// Deltas of `box` against `anchor`. Widths and heights (box and anchor) are floored at
// min_size > 0, so degenerate boxes give finite deltas (mmdet's encoder gives inf or nan).
template <class T>
ALWA_HD_INLINE void encode_deltas(const T (&box)[4], const T (&anchor)[4],
                                  const DeltaCoding<T>& coding, T min_size, T (&delta)[4]) {
  using namespace math;
  const T half(0.5);
  const T aw = max_(anchor[2] - anchor[0], min_size), ah = max_(anchor[3] - anchor[1], min_size);
  const T w = max_(box[2] - box[0], min_size), h = max_(box[3] - box[1], min_size);
  const T dx = (half * (box[0] + box[2]) - half * (anchor[0] + anchor[2])) / aw;
  const T dy = (half * (box[1] + box[3]) - half * (anchor[1] + anchor[3])) / ah;
  delta[0] = (dx - coding.means[0]) / coding.stds[0];
  delta[1] = (dy - coding.means[1]) / coding.stds[1];
  delta[2] = (log_(w / aw) - coding.means[2]) / coding.stds[2];
  delta[3] = (log_(h / ah) - coding.means[3]) / coding.stds[3];
}

// Chain rule through encode_deltas w.r.t. the box: `grad` holds d loss / d delta and becomes
// d loss / d box (xyxy), in place. The anchor is a constant.
template <class T>
ALWA_HD_INLINE void encode_deltas_backward(const T (&box)[4], const T (&anchor)[4],
                                           const DeltaCoding<T>& coding, T min_size,
                                           T (&grad)[4]) {
  using namespace math;
  const T half(0.5), zero(0);
  const T aw = max_(anchor[2] - anchor[0], min_size), ah = max_(anchor[3] - anchor[1], min_size);
  const T w_raw = box[2] - box[0], h_raw = box[3] - box[1];
  const T w = max_(w_raw, min_size), h = max_(h_raw, min_size);
  const T g_cx = grad[0] / (coding.stds[0] * aw), g_cy = grad[1] / (coding.stds[1] * ah);
  T g_w_raw = zero, g_h_raw = zero, unused = zero;
  max_backward(w_raw, min_size, grad[2] / (coding.stds[2] * w), g_w_raw, unused);
  max_backward(h_raw, min_size, grad[3] / (coding.stds[3] * h), g_h_raw, unused);
  grad[0] = half * g_cx - g_w_raw;
  grad[1] = half * g_cy - g_h_raw;
  grad[2] = half * g_cx + g_w_raw;
  grad[3] = half * g_cy + g_h_raw;
}

}  // namespace alwa
