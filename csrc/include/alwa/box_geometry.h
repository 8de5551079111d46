// The overlap geometry every IoU-family loss is built from, and its backward: the two boxes'
// sizes and areas, their intersection and union, the enclosing box and the centre offset.
//
// A pair is scaled first by a power of two chosen from its extent, so the products (areas,
// squared diagonals, the gradients' quotients) cannot overflow for any finite input whose
// coordinate differences are finite (|x| < 1.7e38 in float32). Scaling by a power of two is
// exact, and every loss is invariant to it once eps is scaled by its dimension (an area's eps
// by 1 / scale^2, a length's by 1 / scale): where nothing overflows, the results are bit for
// bit those of the unscaled formulas.
//
// Conventions (torchvision's on ordinary boxes; docs/api.md "Conventions"): widths and heights are
// clamped at 0, so inverted corners describe an empty box; the enclosing box spans all eight
// corner coordinates (the usual one for proper boxes, and it keeps both centres inside it).
#pragma once

#include "alwa/primitives.h"

namespace alwa {

template <class T>
ALWA_HD_INLINE void cxcywh_to_xyxy(const T (&in)[4], T (&out)[4]) {
  const T half_w = T(0.5) * in[2], half_h = T(0.5) * in[3];
  out[0] = in[0] - half_w;
  out[1] = in[1] - half_h;
  out[2] = in[0] + half_w;
  out[3] = in[1] + half_h;
}

// Chain rule through cxcywh_to_xyxy: gradients w.r.t. (x1, y1, x2, y2) become gradients
// w.r.t. (cx, cy, w, h), in place.
template <class T>
ALWA_HD_INLINE void xyxy_grad_to_cxcywh(T (&grad)[4]) {
  const T g_cx = grad[0] + grad[2], g_cy = grad[1] + grad[3];
  const T g_w = T(0.5) * (grad[2] - grad[0]), g_h = T(0.5) * (grad[3] - grad[1]);
  grad[0] = g_cx;
  grad[1] = g_cy;
  grad[2] = g_w;
  grad[3] = g_h;
}

// A pair of xyxy boxes divided by 2^k, where 2^k is the largest power of two not above the
// pair's extent (so a scaled pair spans [1, 2) units along its longer axis); pairs that span
// less than 2 units are left as they are. `poison` is 0, or NaN where an input coordinate is not finite.
template <class T>
struct ScaledPair {
  T p[4], t[4];
  T unscale;  // d scaled coordinate / d coordinate, also the factor on the gradients
  T poison;
};

template <class T>
ALWA_HD_INLINE ScaledPair<T> scale_pair(const T (&p)[4], const T (&t)[4]) {
  using namespace math;
  const T half(0.5), one(1);
  // Extents of the halved coordinates: they cannot overflow where the coordinates are finite.
  const T x_hi = max_(max_(p[0], p[2]), max_(t[0], t[2])) * half;
  const T x_lo = min_(min_(p[0], p[2]), min_(t[0], t[2])) * half;
  const T y_hi = max_(max_(p[1], p[3]), max_(t[1], t[3])) * half;
  const T y_lo = min_(min_(p[1], p[3]), min_(t[1], t[3])) * half;
  const T step = pow2_floor_(max_(x_hi - x_lo, y_hi - y_lo));
  // Pairs are only scaled down (eps, divided by the scale, must not overflow), and a point pair
  // or a subnormal extent keeps its scale.
  const T unscale = select(step > half, half / step, one);
  ScaledPair<T> out;
  out.poison = T(0);
  for (int k = 0; k < 4; ++k) {
    out.p[k] = p[k] * unscale;
    out.t[k] = t[k] * unscale;
    out.poison += nan_unless_finite(p[k]) + nan_unless_finite(t[k]);
  }
  out.unscale = unscale;
  return out;
}

// The geometry of a (scaled) pair. eps_area is eps in the pair's scaled units of area. Beyond
// intersection and union, a kind asks for the enclosing box (kEnclosing: every kind but IoU)
// and the centre offset (kCentre: DIoU, CIoU, EIoU, SIoU).
template <class T>
struct Overlap {
  T pw_raw, ph_raw, tw_raw, th_raw;  // x2 - x1, y2 - y1 before the clamp
  T pw, ph, tw, th;                  // clamped at 0
  T iw_raw, ih_raw, iw, ih;          // intersection extents, before and after the clamp
  T inter, uni, den_u, iou;          // den_u = uni + eps_area, iou = inter / den_u
  T ew, eh;                          // enclosing box (0 unless parts.enclosing)
  T dx, dy, rho;                     // target centre minus prediction centre, |.|^2
};

template <bool kEnclosing, bool kCentre, class T>
ALWA_HD_INLINE Overlap<T> overlap(const T (&p)[4], const T (&t)[4], T eps_area) {
  using namespace math;
  const T zero(0), half(0.5);
  Overlap<T> o;
  o.pw_raw = p[2] - p[0];
  o.ph_raw = p[3] - p[1];
  o.tw_raw = t[2] - t[0];
  o.th_raw = t[3] - t[1];
  o.pw = max_(o.pw_raw, zero);
  o.ph = max_(o.ph_raw, zero);
  o.tw = max_(o.tw_raw, zero);
  o.th = max_(o.th_raw, zero);
  const T area_p = o.pw * o.ph, area_t = o.tw * o.th;
  o.iw_raw = min_(p[2], t[2]) - max_(p[0], t[0]);
  o.ih_raw = min_(p[3], t[3]) - max_(p[1], t[1]);
  o.iw = max_(o.iw_raw, zero);
  o.ih = max_(o.ih_raw, zero);
  o.inter = o.iw * o.ih;
  // area_p + area_t - inter, summed so that a box inside the other gives the outer box's area
  // exactly (inter is then the inner area, bit for bit): GIoU's C - U is exactly 0 there.
  o.uni = max_(area_p, area_t) + (min_(area_p, area_t) - o.inter);
  o.den_u = o.uni + eps_area;
  o.iou = safe_div(o.inter, o.den_u);
  o.ew = zero;
  o.eh = zero;
  if constexpr (kEnclosing) {
    o.ew = max_(max_(p[0], p[2]), max_(t[0], t[2])) - min_(min_(p[0], p[2]), min_(t[0], t[2]));
    o.eh = max_(max_(p[1], p[3]), max_(t[1], t[3])) - min_(min_(p[1], p[3]), min_(t[1], t[3]));
  }
  o.dx = zero;
  o.dy = zero;
  o.rho = zero;
  if constexpr (kCentre) {
    o.dx = half * ((t[0] + t[2]) - (p[0] + p[2]));
    o.dy = half * ((t[1] + t[3]) - (p[1] + p[3]));
    o.rho = o.dx * o.dx + o.dy * o.dy;
  }
  return o;
}

// d loss / d each quantity of Overlap that the kinds' terms use; the terms add to it and
// overlap_backward chains it to the coordinates (iou and uni are treated as independent of
// the sizes until then).
template <class T>
struct OverlapGrad {
  T iou, uni, ew, eh, dx, dy;
  T pw, ph, tw, th;  // w.r.t. the clamped sizes
};

template <class T>
ALWA_HD_INLINE OverlapGrad<T> zero_overlap_grad() {
  const T zero(0);
  return OverlapGrad<T>{zero, zero, zero, zero, zero, zero, zero, zero, zero, zero};
}

// Backward of the enclosing extent max(a1, a2, b1, b2) - min(a1, a2, b1, b2) along one axis
// (a = the prediction's two coordinates, b = the target's), taken pairwise as autograd would.
template <class T>
ALWA_HD_INLINE void enclosing_extent_backward(T a1, T a2, T b1, T b2, T grad, T& grad_a1,
                                              T& grad_a2, T& grad_b1, T& grad_b2) {
  using namespace math;
  T g_hi_a = T(0), g_hi_b = T(0), g_lo_a = T(0), g_lo_b = T(0);
  max_backward(max_(a1, a2), max_(b1, b2), grad, g_hi_a, g_hi_b);
  min_backward(min_(a1, a2), min_(b1, b2), -grad, g_lo_a, g_lo_b);
  max_backward(a1, a2, g_hi_a, grad_a1, grad_a2);
  max_backward(b1, b2, g_hi_b, grad_b1, grad_b2);
  min_backward(a1, a2, g_lo_a, grad_a1, grad_a2);
  min_backward(b1, b2, g_lo_b, grad_b1, grad_b2);
}

// Chains `g` through `overlap` to d loss / d p and d loss / d t (both overwritten).
template <bool kEnclosing, bool kCentre, class T>
ALWA_HD_INLINE void overlap_backward(const T (&p)[4], const T (&t)[4], const Overlap<T>& o,
                                     OverlapGrad<T> g, T (&grad_p)[4], T (&grad_t)[4]) {
  using namespace math;
  const T zero(0), half(0.5);
  for (int k = 0; k < 4; ++k) {
    grad_p[k] = zero;
    grad_t[k] = zero;
  }
  // iou = inter / den_u
  const T inv_den_u = safe_div(T(1), o.den_u);
  T g_inter = g.iou * inv_den_u;
  g.uni -= g.iou * o.iou * inv_den_u;

  if constexpr (kCentre) {
    // dx = ((t0 + t2) - (p0 + p2)) / 2
    grad_p[0] -= half * g.dx;
    grad_p[2] -= half * g.dx;
    grad_t[0] += half * g.dx;
    grad_t[2] += half * g.dx;
    grad_p[1] -= half * g.dy;
    grad_p[3] -= half * g.dy;
    grad_t[1] += half * g.dy;
    grad_t[3] += half * g.dy;
  }

  // uni = area_p + area_t - inter
  g_inter -= g.uni;
  g.pw += g.uni * o.ph;
  g.ph += g.uni * o.pw;
  g.tw += g.uni * o.th;
  g.th += g.uni * o.tw;

  // inter = relu(ix2 - ix1) * relu(iy2 - iy1)
  const T g_iw = relu_backward(o.iw_raw, g_inter * o.ih);
  const T g_ih = relu_backward(o.ih_raw, g_inter * o.iw);
  max_backward(p[0], t[0], -g_iw, grad_p[0], grad_t[0]);
  min_backward(p[2], t[2], g_iw, grad_p[2], grad_t[2]);
  max_backward(p[1], t[1], -g_ih, grad_p[1], grad_t[1]);
  min_backward(p[3], t[3], g_ih, grad_p[3], grad_t[3]);

  if constexpr (kEnclosing) {
    enclosing_extent_backward(p[0], p[2], t[0], t[2], g.ew, grad_p[0], grad_p[2], grad_t[0],
                              grad_t[2]);
    enclosing_extent_backward(p[1], p[3], t[1], t[3], g.eh, grad_p[1], grad_p[3], grad_t[1],
                              grad_t[3]);
  }

  // box widths/heights = relu(x2 - x1)
  const T g_pw_raw = relu_backward(o.pw_raw, g.pw), g_ph_raw = relu_backward(o.ph_raw, g.ph);
  const T g_tw_raw = relu_backward(o.tw_raw, g.tw), g_th_raw = relu_backward(o.th_raw, g.th);
  grad_p[0] -= g_pw_raw;
  grad_p[2] += g_pw_raw;
  grad_p[1] -= g_ph_raw;
  grad_p[3] += g_ph_raw;
  grad_t[0] -= g_tw_raw;
  grad_t[2] += g_tw_raw;
  grad_t[1] -= g_th_raw;
  grad_t[3] += g_th_raw;
}

}  // namespace alwa
