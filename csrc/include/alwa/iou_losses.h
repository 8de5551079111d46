// The IoU-family losses, forward and analytic backward, one function per kind's term, on the
// geometry of box_geometry.h. Written once: every CPU (scalar and SIMD) and CUDA kernel calls
// iou_loss_xyxy / iou_loss below.
//
// Where eps goes (torchvision's choices on ordinary boxes; docs/api.md "Conventions"):
//   IoU = I / (U + eps); GIoU's enclosing area + eps; DIoU/CIoU's squared diagonal + eps;
//   CIoU's aspect term uses atan2(w, h) (= atan(w / h) for h > 0, finite for h = 0) and its
//   weight v / (1 - IoU + v + eps) is a constant for the gradient; EIoU's width/height terms
//   divide by cw^2 + eps and ch^2 + eps; SIoU's quotients add eps to the denominator
//   (sigma = |centre offset| + eps, cw + eps, max(w, wg) + eps).
// Alpha-IoU raises IoU and each penalty (all >= 0) to alpha; at 0 the slope of x^alpha is taken
// as 0 for alpha != 1 (infinite for alpha < 1, but 0 is where each term is smallest, and IoU's
// own gradient vanishes at IoU = 0). Every quotient whose denominator is 0 (possible only with
// eps = 0) is taken as 0. A NaN or infinite coordinate gives a NaN loss and NaN gradients.
// Gradients follow autograd's subgradient choices: clamp(x, 0) passes the gradient only for
// x > 0, min/max split it evenly on ties, |x| has gradient 0 at 0.
#pragma once

#include "alwa/box_geometry.h"
#include "alwa/kinds.h"

namespace alwa {

// Parameters of the IoU-family losses beyond eps; the flags are decided on the host, once per
// call, so the plain losses skip the pow calls.
template <class T>
struct IoULossParams {
  T eps;
  T alpha;           // Alpha-IoU power (IoU, GIoU, DIoU, CIoU); 1 = the plain loss
  bool alpha_power;  // alpha != 1
  T focal_gamma;     // Focal-EIoU: EIoU times IoU^focal_gamma (a constant); 0 = none
  bool focal;        // focal_gamma != 0
};

template <class T>
ALWA_HD_INLINE IoULossParams<T> plain_iou_params(T eps) {
  IoULossParams<T> params;
  params.eps = eps;
  params.alpha = T(1);
  params.alpha_power = false;
  params.focal_gamma = T(0);
  params.focal = false;
  return params;
}

// eps in the units of a scaled pair (box_geometry.h's scale_pair): where it is added to an
// area, to a length, or to a pure number.
template <class T>
struct PairEps {
  T area, length, number;
};

// A term >= 0 raised to the Alpha-IoU power; writes d(term^alpha)/d term to `slope`.
template <class T>
ALWA_HD_INLINE T alpha_power(T term, const IoULossParams<T>& params, T& slope) {
  if (!params.alpha_power) {  // uniform over the call, not data-dependent
    slope = T(1);
    return term;
  }
  slope = math::pow_nonnegative_slope(term, params.alpha);
  return math::pow_nonnegative(term, params.alpha);
}

// ----------------------------------------------------------------------------- the terms

// 1 - IoU (Alpha-IoU: 1 - IoU^alpha).
template <class T>
ALWA_HD_INLINE T iou_term(const Overlap<T>& o, const IoULossParams<T>& params, OverlapGrad<T>& g) {
  T slope;
  const T loss = T(1) - alpha_power(o.iou, params, slope);
  g.iou -= slope;
  return loss;
}

// GIoU's penalty (C - U) / (C + eps); d/dC = (U + eps) / (C + eps)^2, d/dU = -1 / (C + eps).
template <class T>
ALWA_HD_INLINE T giou_penalty(const Overlap<T>& o, const IoULossParams<T>& params,
                              const PairEps<T>& eps, OverlapGrad<T>& g) {
  using namespace math;
  const T area_c = o.ew * o.eh;
  const T den_c = area_c + eps.area;
  T slope;
  const T penalty = alpha_power(safe_div(area_c - o.uni, den_c), params, slope);
  const T inv_den_c = safe_div(T(1), den_c);
  const T g_area_c = slope * safe_div(o.uni + eps.area, den_c) * inv_den_c;
  g.uni -= slope * inv_den_c;
  g.ew += g_area_c * o.eh;
  g.eh += g_area_c * o.ew;
  return penalty;
}

// The squared diagonal of the enclosing box plus eps (DIoU, CIoU, EIoU).
template <class T>
ALWA_HD_INLINE T enclosing_diagonal(const Overlap<T>& o, const PairEps<T>& eps) {
  return o.ew * o.ew + o.eh * o.eh + eps.area;
}

// DIoU's penalty: squared centre distance over the squared diagonal, times `factor`
// (Focal-EIoU's constant; 1 otherwise). Returns the penalty before the factor.
template <class T>
ALWA_HD_INLINE T centre_distance(const Overlap<T>& o, T diag, T factor, OverlapGrad<T>& g) {
  using namespace math;
  const T two(2);
  const T centre = safe_div(o.rho, diag);
  const T inv_diag = safe_div(T(1), diag);
  const T g_diag = -factor * centre * inv_diag;
  g.ew += two * o.ew * g_diag;
  g.eh += two * o.eh * g_diag;
  g.dx += factor * two * o.dx * inv_diag;
  g.dy += factor * two * o.dy * inv_diag;
  return centre;
}

template <class T>
ALWA_HD_INLINE T diou_penalty(const Overlap<T>& o, const IoULossParams<T>& params,
                              const PairEps<T>& eps, OverlapGrad<T>& g) {
  using namespace math;
  const T diag = enclosing_diagonal(o, eps);
  const T centre = safe_div(o.rho, diag);
  T slope;
  const T penalty = alpha_power(centre, params, slope);
  centre_distance(o, diag, slope, g);
  return penalty;
}

// CIoU's aspect-ratio consistency v = 4/pi^2 (atan(wt/ht) - atan(wp/hp))^2, times its weight
// v / (1 - IoU + v + eps), which is a constant for the gradient.
template <class T>
ALWA_HD_INLINE T ciou_aspect_penalty(const Overlap<T>& o, const IoULossParams<T>& params,
                                     const PairEps<T>& eps, OverlapGrad<T>& g) {
  using namespace math;
  constexpr double kFourOverPiSquared = 0.40528473456935108578;
  const T one(1);
  const T dtheta = atan2_(o.tw, o.th) - atan2_(o.pw, o.ph);
  const T v = T(kFourOverPiSquared) * dtheta * dtheta;
  const T aspect_weight = safe_div(v, one - o.iou + v + eps.number);
  T slope;
  const T penalty = alpha_power(aspect_weight * v, params, slope);
  // d atan2(w, h) = (h dw - w dh) / (w^2 + h^2).
  const T g_dtheta = slope * aspect_weight * T(2 * kFourOverPiSquared) * dtheta;
  const T norm_p = o.pw * o.pw + o.ph * o.ph, norm_t = o.tw * o.tw + o.th * o.th;
  g.pw -= g_dtheta * safe_div(o.ph, norm_p);
  g.ph += g_dtheta * safe_div(o.pw, norm_p);
  g.tw += g_dtheta * safe_div(o.th, norm_t);
  g.th -= g_dtheta * safe_div(o.tw, norm_t);
  return penalty;
}

// EIoU (Focal-EIoU paper): (1 - IoU + rho / diag + (w - wg)^2 / (cw^2 + eps)
// + (h - hg)^2 / (ch^2 + eps)) * IoU^gamma, the focal factor a constant.
template <class T>
ALWA_HD_INLINE T eiou_loss(const Overlap<T>& o, const IoULossParams<T>& params,
                           const PairEps<T>& eps, OverlapGrad<T>& g) {
  using namespace math;
  const T one(1), two(2);
  const T focal = params.focal ? pow_nonnegative(o.iou, params.focal_gamma) : one;
  const T centre = centre_distance(o, enclosing_diagonal(o, eps), focal, g);
  const T dw = o.pw - o.tw, dh = o.ph - o.th;
  const T den_w = o.ew * o.ew + eps.area, den_h = o.eh * o.eh + eps.area;
  const T width_term = safe_div(dw * dw, den_w), height_term = safe_div(dh * dh, den_h);
  g.iou -= focal;
  const T inv_den_w = safe_div(one, den_w), inv_den_h = safe_div(one, den_h);
  const T g_dw = focal * two * dw * inv_den_w, g_dh = focal * two * dh * inv_den_h;
  g.pw += g_dw;
  g.tw -= g_dw;
  g.ph += g_dh;
  g.th -= g_dh;
  g.ew -= two * o.ew * focal * width_term * inv_den_w;
  g.eh -= two * o.eh * focal * height_term * inv_den_h;
  return focal * (one - o.iou + centre + width_term + height_term);
}

// SIoU (SIoU paper, the paper's signs): 1 - IoU + (distance + shape) / 2.
template <class T>
ALWA_HD_INLINE T siou_loss(const Overlap<T>& o, const PairEps<T>& eps, OverlapGrad<T>& g) {
  using namespace math;
  const T one(1), two(2), half(0.5);
  const T e = eps.length;
  const T dx = o.dx, dy = o.dy;
  // Angle cost A = 1 - 2 sin^2(asin(s) - pi/4) with s = |dy| / sigma equals sin(2 asin(s)) =
  // 2 s c, c = sqrt(1 - s^2). As sigma = r + eps with r = |(dx, dy)|, sigma^2 - dy^2 =
  // dx^2 + eps (2 r + eps) =: q^2 and c = q / sigma: computed so, A has no cancellation and a
  // finite gradient where s -> 1 (asin's slope is infinite there; A's w.r.t. dx is not).
  // s <= 1 holds without a min(., 1), since sigma >= r >= |dy|.
  const T r = sqrt_(o.rho);
  const T sigma = r + e;
  const T inv_sigma = safe_div(one, sigma);
  const T q = sqrt_(dx * dx + e * (two * r + e));
  const T s = abs_(dy) * inv_sigma, c = q * inv_sigma;
  const T angle = two * s * c;
  const T gamma = two - angle;
  // Distance cost D = sum over x, y of 1 - exp(-gamma (d / (c + eps))^2).
  const T inv_cw = safe_div(one, o.ew + e), inv_ch = safe_div(one, o.eh + e);
  const T ux = dx * inv_cw, uy = dy * inv_ch;
  const T rho_x = ux * ux, rho_y = uy * uy;
  const T exp_x = exp_(-gamma * rho_x), exp_y = exp_(-gamma * rho_y);
  const T distance = (one - exp_x) + (one - exp_y);
  // Shape cost S = sum over w, h of (1 - exp(-|w - wg| / (max(w, wg) + eps)))^4.
  const T inv_max_w = safe_div(one, max_(o.pw, o.tw) + e);
  const T inv_max_h = safe_div(one, max_(o.ph, o.th) + e);
  const T omega_w = abs_(o.pw - o.tw) * inv_max_w, omega_h = abs_(o.ph - o.th) * inv_max_h;
  const T exp_w = exp_(-omega_w), exp_h = exp_(-omega_h);
  const T rise_w = one - exp_w, rise_h = one - exp_h;
  const T rise_w2 = rise_w * rise_w, rise_h2 = rise_h * rise_h;
  const T shape = rise_w2 * rise_w2 + rise_h2 * rise_h2;

  g.iou -= one;
  // distance: d/d rho_x = gamma exp_x / 2, d/d gamma = (rho_x exp_x + rho_y exp_y) / 2
  const T g_rho_x = half * gamma * exp_x, g_rho_y = half * gamma * exp_y;
  g.dx += g_rho_x * two * ux * inv_cw;
  g.dy += g_rho_y * two * uy * inv_ch;
  g.ew -= g_rho_x * two * rho_x * inv_cw;
  g.eh -= g_rho_y * two * rho_y * inv_ch;
  const T g_angle = -half * (rho_x * exp_x + rho_y * exp_y);  // gamma = 2 - A
  // A = 2 |dy| q / sigma^2; q^2 = dx^2 + eps (2 r + eps); sigma = r + eps
  const T g_abs_dy = g_angle * two * c * inv_sigma;
  const T g_q = g_angle * two * s * inv_sigma;
  const T inv_q = safe_div(one, q), inv_r = safe_div(one, r);
  const T g_r = g_q * e * inv_q - g_angle * two * angle * inv_sigma;
  g.dx += g_q * dx * inv_q + g_r * dx * inv_r;
  g.dy += g_abs_dy * sign_(dy) + g_r * dy * inv_r;
  // shape: d rise^4 / d omega = 4 rise^3 exp(-omega), halved
  const T g_omega_w = two * rise_w2 * rise_w * exp_w;
  const T g_omega_h = two * rise_h2 * rise_h * exp_h;
  const T g_diff_w = g_omega_w * sign_(o.pw - o.tw) * inv_max_w;
  const T g_diff_h = g_omega_h * sign_(o.ph - o.th) * inv_max_h;
  g.pw += g_diff_w;
  g.tw -= g_diff_w;
  g.ph += g_diff_h;
  g.th -= g_diff_h;
  max_backward(o.pw, o.tw, -g_omega_w * omega_w * inv_max_w, g.pw, g.tw);
  max_backward(o.ph, o.th, -g_omega_h * omega_h * inv_max_h, g.ph, g.th);
  return one - o.iou + half * (distance + shape);
}

// ----------------------------------------------------------------------------- one pair

// Kind K's loss of one (pred, target) pair of xyxy boxes. With kGrad it also writes
// d loss / d pred into grad_pred and d loss / d target into grad_target (both overwritten).
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss_xyxy(const T (&pred)[4], const T (&target)[4],
                               const IoULossParams<T>& params, T (&grad_pred)[4],
                               T (&grad_target)[4]) {
  static_assert(is_iou_family(K), "iou_loss_xyxy takes an IoU-family kind");
  constexpr bool kEnclosing = K != LossKind::IoU;
  constexpr bool kCentre = K == LossKind::DIoU || K == LossKind::CIoU || K == LossKind::EIoU ||
                           K == LossKind::SIoU;
  const ScaledPair<T> pair = scale_pair(pred, target);
  const T unscale = pair.unscale;
  const PairEps<T> eps{params.eps * unscale * unscale, params.eps * unscale, params.eps};
  const Overlap<T> o = overlap<kEnclosing, kCentre>(pair.p, pair.t, eps.area);
  OverlapGrad<T> g = zero_overlap_grad<T>();
  T loss;
  if constexpr (K == LossKind::EIoU) {
    loss = eiou_loss(o, params, eps, g);
  } else if constexpr (K == LossKind::SIoU) {
    loss = siou_loss(o, eps, g);
  } else {
    loss = iou_term(o, params, g);
    if constexpr (K == LossKind::GIoU) loss += giou_penalty(o, params, eps, g);
    if constexpr (K == LossKind::DIoU || K == LossKind::CIoU) loss += diou_penalty(o, params, eps, g);
    if constexpr (K == LossKind::CIoU) loss += ciou_aspect_penalty(o, params, eps, g);
  }
  if constexpr (kGrad) {
    overlap_backward<kEnclosing, kCentre>(pair.p, pair.t, o, g, grad_pred, grad_target);
    for (int k = 0; k < 4; ++k) {
      grad_pred[k] = grad_pred[k] * unscale + pair.poison;
      grad_target[k] = grad_target[k] * unscale + pair.poison;
    }
  }
  return loss + pair.poison;
}

// The same for a pair given in `format` (xyxy or cxcywh; box_loss_element decodes deltas
// first); gradients come back in that format.
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss(const T (&pred)[4], const T (&target)[4], BoxFormat format,
                          const IoULossParams<T>& params, T (&grad_pred)[4], T (&grad_target)[4]) {
  if (format != BoxFormat::CXCYWH) {
    return iou_loss_xyxy<K, kGrad>(pred, target, params, grad_pred, grad_target);
  }
  T p[4], t[4];
  cxcywh_to_xyxy(pred, p);
  cxcywh_to_xyxy(target, t);
  const T loss = iou_loss_xyxy<K, kGrad>(p, t, params, grad_pred, grad_target);
  if constexpr (kGrad) {
    xyxy_grad_to_cxcywh(grad_pred);
    xyxy_grad_to_cxcywh(grad_target);
  }
  return loss;
}

// Value of the pairwise similarity K (IoU, GIoU, DIoU or CIoU) of two boxes: 1 - its loss.
template <LossKind K, class T>
ALWA_HD_INLINE T iou_value(const T (&box1)[4], const T (&box2)[4], BoxFormat format, T eps) {
  T unused1[4], unused2[4];
  return T(1) - iou_loss<K, false>(box1, box2, format, plain_iou_params(eps), unused1, unused2);
}

}  // namespace alwa
