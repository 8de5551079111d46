// Box-regression losses, forward and analytic backward, written once.
//
// Every CPU and CUDA kernel of the project computes its per-box numbers through the functions
// below, so the backends cannot drift apart. The header is torch-free and compiles with nvcc
// or a host compiler alone. `T` is the compute type: float (also for half/bfloat16 storage) or
// double. The code is branch-free in the data (comparisons feed `select`), so a SIMD type with
// overloads of the primitives in `alwa::math` (declared before this header is included) can
// instantiate it too.
//
// Conventions (torchvision's on ordinary boxes; see README "Conventions"):
//   widths and heights are clamped at 0, so inverted corners describe an empty box; the
//   enclosing box spans all eight corner coordinates (the usual one for proper boxes);
//   IoU = I / (U + eps); GIoU enclosing area + eps; DIoU/CIoU diagonal^2 + eps;
//   CIoU aspect term uses atan2(w, h) (= atan(w / h) for h > 0, finite for h = 0) and its
//   weight v / (1 - IoU + v + eps) is a constant for the gradient;
//   EIoU's width/height terms divide by cw^2 + eps and ch^2 + eps, SIoU's quotients add eps to
//   the denominator (sigma = |centre offset| + eps, cw + eps, max(w, wg) + eps);
//   Alpha-IoU raises 1 - IoU's IoU and each penalty (all >= 0) to alpha; at 0 the slope of
//   x^alpha is taken as 0 for alpha != 1 (infinite for alpha < 1, but 0 is where each term
//   is smallest, and IoU's own gradient vanishes at IoU = 0);
//   every quotient whose denominator is 0 (possible only with eps = 0) is taken as 0.
// Gradients follow autograd's subgradient choices: clamp(x, 0) passes the gradient only for
// x > 0, min/max split it evenly on ties, |x| has gradient 0 at 0.
#pragma once

#include <math.h>
#include <stdint.h>

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

namespace math {

template <class T>
ALWA_HD_INLINE T select(bool mask, T if_true, T if_false) {
  return mask ? if_true : if_false;
}
template <class T>
ALWA_HD_INLINE T min_(T a, T b) {
  return b < a ? b : a;
}
template <class T>
ALWA_HD_INLINE T max_(T a, T b) {
  return a < b ? b : a;
}
ALWA_HD_INLINE float atan2_(float y, float x) { return ::atan2f(y, x); }
ALWA_HD_INLINE double atan2_(double y, double x) { return ::atan2(y, x); }
ALWA_HD_INLINE float exp_(float x) { return ::expf(x); }
ALWA_HD_INLINE double exp_(double x) { return ::exp(x); }
ALWA_HD_INLINE float log_(float x) { return ::logf(x); }
ALWA_HD_INLINE double log_(double x) { return ::log(x); }
ALWA_HD_INLINE float sqrt_(float x) { return ::sqrtf(x); }
ALWA_HD_INLINE double sqrt_(double x) { return ::sqrt(x); }
ALWA_HD_INLINE float pow_(float x, float y) { return ::powf(x, y); }
ALWA_HD_INLINE double pow_(double x, double y) { return ::pow(x, y); }

// num / den, and 0 where den <= 0 (only reachable with eps = 0).
template <class T>
ALWA_HD_INLINE T safe_div(T num, T den) {
  const auto positive = den > T(0);
  return select(positive, num / select(positive, den, T(1)), T(0));
}
template <class T>
ALWA_HD_INLINE T abs_(T x) {
  return select(x < T(0), -x, x);
}
template <class T>
ALWA_HD_INLINE T sign_(T x) {
  return select(x > T(0), T(1), select(x < T(0), T(-1), T(0)));
}

// Backward of clamp(x, min=0) (relu): the gradient passes only where x > 0.
template <class T>
ALWA_HD_INLINE T relu_backward(T x, T grad) {
  return select(x > T(0), grad, T(0));
}
// Backward of min(a, b) / max(a, b): the winner takes the gradient, ties split it evenly.
template <class T>
ALWA_HD_INLINE void min_backward(T a, T b, T grad, T& grad_a, T& grad_b) {
  const T half = grad * T(0.5);
  grad_a += select(a < b, grad, select(a == b, half, T(0)));
  grad_b += select(b < a, grad, select(a == b, half, T(0)));
}
template <class T>
ALWA_HD_INLINE void max_backward(T a, T b, T grad, T& grad_a, T& grad_b) {
  const T half = grad * T(0.5);
  grad_a += select(b < a, grad, select(a == b, half, T(0)));
  grad_b += select(a < b, grad, select(a == b, half, T(0)));
}

// Backward of the enclosing extent max(a1, a2, b1, b2) - min(a1, a2, b1, b2) along one axis
// (a = the prediction's two coordinates, b = the target's), taken pairwise as autograd would.
template <class T>
ALWA_HD_INLINE void enclosing_extent_backward(T a1, T a2, T b1, T b2, T grad, T& grad_a1,
                                              T& grad_a2, T& grad_b1, T& grad_b2) {
  T g_hi_a = T(0), g_hi_b = T(0), g_lo_a = T(0), g_lo_b = T(0);
  max_backward(max_(a1, a2), max_(b1, b2), grad, g_hi_a, g_hi_b);
  min_backward(min_(a1, a2), min_(b1, b2), -grad, g_lo_a, g_lo_b);
  max_backward(a1, a2, g_hi_a, grad_a1, grad_a2);
  max_backward(b1, b2, g_hi_b, grad_b1, grad_b2);
  min_backward(a1, a2, g_lo_a, grad_a1, grad_a2);
  min_backward(b1, b2, g_lo_b, grad_b1, grad_b2);
}

// x^a for x >= 0; x <= 0 (negative only through rounding) gives 0.
template <class T>
ALWA_HD_INLINE T pow_nonnegative(T x, T a) {
  const auto positive = x > T(0);
  return select(positive, pow_(select(positive, x, T(1)), a), T(0));
}
// Its slope a x^(a - 1) for x > 0, and 0 at x <= 0 (meant for a != 1: the slope there is
// 0 for a > 1 and infinite for a < 1, where 0 is taken as the subgradient).
template <class T>
ALWA_HD_INLINE T pow_nonnegative_slope(T x, T a) {
  const auto positive = x > T(0);
  return select(positive, a * pow_(select(positive, x, T(1)), a - T(1)), T(0));
}
// Backward of clamp(x, lo, hi): the gradient passes where lo <= x <= hi (autograd's choice).
template <class T>
ALWA_HD_INLINE T clamp_backward(T x, T lo, T hi, T grad) {
  return select(x < lo, T(0), select(hi < x, T(0), grad));
}

}  // namespace math

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

// A penalty term >= 0 raised to the Alpha-IoU power; writes d(term^alpha)/d term to `slope`.
template <class T>
ALWA_HD_INLINE T alpha_power(T term, const IoULossParams<T>& params, T& slope) {
  if (!params.alpha_power) {  // uniform over the call, not data-dependent
    slope = T(1);
    return term;
  }
  slope = math::pow_nonnegative_slope(term, params.alpha);
  return math::pow_nonnegative(term, params.alpha);
}

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

// IoU-family loss of one (pred, target) pair of xyxy boxes: returns the kind's loss (see the
// conventions at the top). With kGrad it also writes d loss / d pred into grad_pred and
// d loss / d target into grad_target (both overwritten).
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss_xyxy(const T (&p)[4], const T (&t)[4], const IoULossParams<T>& params,
                               T (&grad_pred)[4], T (&grad_target)[4]) {
  using namespace math;
  static_assert(is_iou_family(K), "iou_loss_xyxy takes an IoU-family kind");
  constexpr bool kEnclosing = K != LossKind::IoU;
  constexpr bool kCentre = K == LossKind::DIoU || K == LossKind::CIoU || K == LossKind::EIoU ||
                           K == LossKind::SIoU;
  constexpr bool kDiagonal = kCentre && K != LossKind::SIoU;
  const T zero(0), one(1), two(2), half(0.5);
  const T eps = params.eps;

  const T pw_raw = p[2] - p[0], ph_raw = p[3] - p[1];
  const T tw_raw = t[2] - t[0], th_raw = t[3] - t[1];
  const T pw = max_(pw_raw, zero), ph = max_(ph_raw, zero);
  const T tw = max_(tw_raw, zero), th = max_(th_raw, zero);
  const T area_p = pw * ph, area_t = tw * th;

  const T ix1 = max_(p[0], t[0]), iy1 = max_(p[1], t[1]);
  const T ix2 = min_(p[2], t[2]), iy2 = min_(p[3], t[3]);
  const T iw_raw = ix2 - ix1, ih_raw = iy2 - iy1;
  const T iw = max_(iw_raw, zero), ih = max_(ih_raw, zero);
  const T inter = iw * ih;
  // area_p + area_t - inter, summed so that a box inside the other gives the outer box's area
  // exactly (inter is then the inner area, bit for bit): GIoU's C - U is exactly 0 there.
  const T uni = max_(area_p, area_t) + (min_(area_p, area_t) - inter);
  const T den_u = uni + eps;
  const T iou = safe_div(inter, den_u);

  // Enclosing box (width ew = cw, height eh = ch). It spans all the corners (for proper boxes:
  // min of the x1s to max of the x2s), so both centres lie inside it even for inverted boxes and
  // the centre penalties stay within [0, 1].
  T ew = zero, eh = zero;
  if constexpr (kEnclosing) {
    ew = max_(max_(p[0], p[2]), max_(t[0], t[2])) - min_(min_(p[0], p[2]), min_(t[0], t[2]));
    eh = max_(max_(p[1], p[3]), max_(t[1], t[3])) - min_(min_(p[1], p[3]), min_(t[1], t[3]));
  }
  // Centre offset (target minus prediction), its squared length and the squared diagonal.
  T dx = zero, dy = zero, rho = zero, diag = zero;
  if constexpr (kCentre) {
    dx = half * ((t[0] + t[2]) - (p[0] + p[2]));
    dy = half * ((t[1] + t[3]) - (p[1] + p[3]));
    rho = dx * dx + dy * dy;
  }
  if constexpr (kDiagonal) diag = ew * ew + eh * eh + eps;

  // d loss / d each intermediate, filled by the kind's terms and chained back to the
  // coordinates at the end (inter and uni are treated as independent until then).
  T g_iou = zero, g_uni = zero, g_ew = zero, g_eh = zero, g_dx = zero, g_dy = zero;
  T g_pw = zero, g_ph = zero, g_tw = zero, g_th = zero;
  T loss = zero;

  if constexpr (has_alpha_form(K)) {
    T slope;
    loss = one - alpha_power(iou, params, slope);
    g_iou = -slope;
  }
  if constexpr (K == LossKind::GIoU) {
    // penalty (C - U) / (C + eps); d/dC = (U + eps) / (C + eps)^2, d/dU = -1 / (C + eps).
    const T area_c = ew * eh;
    const T den_c = area_c + eps;
    T slope;
    loss += alpha_power(safe_div(area_c - uni, den_c), params, slope);
    const T inv_den_c = safe_div(one, den_c);
    const T g_area_c = slope * safe_div(uni + eps, den_c) * inv_den_c;
    g_uni -= slope * inv_den_c;
    g_ew += g_area_c * eh;
    g_eh += g_area_c * ew;
  }
  if constexpr (K == LossKind::DIoU || K == LossKind::CIoU) {
    const T centre = safe_div(rho, diag);
    T slope;
    loss += alpha_power(centre, params, slope);
    const T inv_diag = safe_div(one, diag);
    const T g_diag = -slope * centre * inv_diag;
    g_ew += two * ew * g_diag;
    g_eh += two * eh * g_diag;
    g_dx += slope * two * dx * inv_diag;
    g_dy += slope * two * dy * inv_diag;
  }
  // Aspect-ratio consistency v = 4/pi^2 (atan(wt/ht) - atan(wp/hp))^2, times its weight.
  constexpr double kFourOverPiSquared = 0.40528473456935108578;
  if constexpr (K == LossKind::CIoU) {
    const T dtheta = atan2_(tw, th) - atan2_(pw, ph);
    const T v = T(kFourOverPiSquared) * dtheta * dtheta;
    const T aspect_weight = safe_div(v, one - iou + v + eps);  // constant for the gradient
    T slope;
    loss += alpha_power(aspect_weight * v, params, slope);
    // d atan2(w, h) = (h dw - w dh) / (w^2 + h^2).
    const T g_dtheta = slope * aspect_weight * T(2 * kFourOverPiSquared) * dtheta;
    const T norm_p = pw * pw + ph * ph, norm_t = tw * tw + th * th;
    g_pw -= g_dtheta * safe_div(ph, norm_p);
    g_ph += g_dtheta * safe_div(pw, norm_p);
    g_tw += g_dtheta * safe_div(th, norm_t);
    g_th -= g_dtheta * safe_div(tw, norm_t);
  }
  if constexpr (K == LossKind::EIoU) {
    // (1 - IoU + rho / diag + (w - wg)^2 / (cw^2 + eps) + (h - hg)^2 / (ch^2 + eps)) * IoU^gamma
    const T focal = params.focal ? pow_nonnegative(iou, params.focal_gamma) : one;
    const T centre = safe_div(rho, diag);
    const T dw = pw - tw, dh = ph - th;
    const T den_w = ew * ew + eps, den_h = eh * eh + eps;
    const T width_term = safe_div(dw * dw, den_w), height_term = safe_div(dh * dh, den_h);
    loss = focal * (one - iou + centre + width_term + height_term);
    g_iou = -focal;
    const T inv_diag = safe_div(one, diag);
    const T g_diag = -focal * centre * inv_diag;
    g_dx += focal * two * dx * inv_diag;
    g_dy += focal * two * dy * inv_diag;
    const T inv_den_w = safe_div(one, den_w), inv_den_h = safe_div(one, den_h);
    const T g_dw = focal * two * dw * inv_den_w, g_dh = focal * two * dh * inv_den_h;
    g_pw += g_dw;
    g_tw -= g_dw;
    g_ph += g_dh;
    g_th -= g_dh;
    g_ew += two * ew * (g_diag - focal * width_term * inv_den_w);
    g_eh += two * eh * (g_diag - focal * height_term * inv_den_h);
  }
  if constexpr (K == LossKind::SIoU) {
    // Angle cost A = 1 - 2 sin^2(asin(s) - pi/4) with s = |dy| / sigma equals sin(2 asin(s)) =
    // 2 s c, c = sqrt(1 - s^2). As sigma = r + eps with r = |(dx, dy)|, sigma^2 - dy^2 =
    // dx^2 + eps (2 r + eps) =: q^2 and c = q / sigma: computed so, A has no cancellation and a
    // finite gradient where s -> 1 (asin's slope is infinite there; A's w.r.t. dx is not).
    // s <= 1 holds without the min(., 1), since sigma >= r >= |dy|.
    const T r = sqrt_(rho);
    const T sigma = r + eps;
    const T inv_sigma = safe_div(one, sigma);
    const T q = sqrt_(dx * dx + eps * (two * r + eps));
    const T s = abs_(dy) * inv_sigma, c = q * inv_sigma;
    const T angle = two * s * c;
    const T gamma = two - angle;
    // Distance cost D = sum over x, y of 1 - exp(-gamma (d / (c + eps))^2).
    const T inv_cw = safe_div(one, ew + eps), inv_ch = safe_div(one, eh + eps);
    const T ux = dx * inv_cw, uy = dy * inv_ch;
    const T rho_x = ux * ux, rho_y = uy * uy;
    const T exp_x = exp_(-gamma * rho_x), exp_y = exp_(-gamma * rho_y);
    const T distance = (one - exp_x) + (one - exp_y);
    // Shape cost S = sum over w, h of (1 - exp(-|w - wg| / (max(w, wg) + eps)))^4.
    const T inv_max_w = safe_div(one, max_(pw, tw) + eps);
    const T inv_max_h = safe_div(one, max_(ph, th) + eps);
    const T omega_w = abs_(pw - tw) * inv_max_w, omega_h = abs_(ph - th) * inv_max_h;
    const T exp_w = exp_(-omega_w), exp_h = exp_(-omega_h);
    const T rise_w = one - exp_w, rise_h = one - exp_h;
    const T rise_w2 = rise_w * rise_w, rise_h2 = rise_h * rise_h;
    const T shape = rise_w2 * rise_w2 + rise_h2 * rise_h2;
    loss = one - iou + half * (distance + shape);

    g_iou = -one;
    // distance: d/d rho_x = gamma exp_x / 2, d/d gamma = (rho_x exp_x + rho_y exp_y) / 2
    const T g_rho_x = half * gamma * exp_x, g_rho_y = half * gamma * exp_y;
    g_dx += g_rho_x * two * ux * inv_cw;
    g_dy += g_rho_y * two * uy * inv_ch;
    g_ew -= g_rho_x * two * rho_x * inv_cw;
    g_eh -= g_rho_y * two * rho_y * inv_ch;
    const T g_angle = -half * (rho_x * exp_x + rho_y * exp_y);  // gamma = 2 - A
    // A = 2 |dy| q / sigma^2; q^2 = dx^2 + eps (2 r + eps); sigma = r + eps
    const T g_abs_dy = g_angle * two * c * inv_sigma;
    const T g_q = g_angle * two * s * inv_sigma;
    const T inv_q = safe_div(one, q), inv_r = safe_div(one, r);
    const T g_r = g_q * eps * inv_q - g_angle * two * angle * inv_sigma;
    g_dx += g_q * dx * inv_q + g_r * dx * inv_r;
    g_dy += g_abs_dy * sign_(dy) + g_r * dy * inv_r;
    // shape: d rise^4 / d omega = 4 rise^3 exp(-omega), halved
    const T g_omega_w = two * rise_w2 * rise_w * exp_w;
    const T g_omega_h = two * rise_h2 * rise_h * exp_h;
    const T g_diff_w = g_omega_w * sign_(pw - tw) * inv_max_w;
    const T g_diff_h = g_omega_h * sign_(ph - th) * inv_max_h;
    g_pw += g_diff_w;
    g_tw -= g_diff_w;
    g_ph += g_diff_h;
    g_th -= g_diff_h;
    max_backward(pw, tw, -g_omega_w * omega_w * inv_max_w, g_pw, g_tw);
    max_backward(ph, th, -g_omega_h * omega_h * inv_max_h, g_ph, g_th);
  }
  if constexpr (kGrad) {
    for (int k = 0; k < 4; ++k) {
      grad_pred[k] = zero;
      grad_target[k] = zero;
    }
    // iou = inter / den_u
    const T inv_den_u = safe_div(one, den_u);
    T g_inter = g_iou * inv_den_u;
    g_uni -= g_iou * iou * inv_den_u;

    if constexpr (kCentre) {
      // dx = ((t0 + t2) - (p0 + p2)) / 2
      grad_pred[0] -= half * g_dx;
      grad_pred[2] -= half * g_dx;
      grad_target[0] += half * g_dx;
      grad_target[2] += half * g_dx;
      grad_pred[1] -= half * g_dy;
      grad_pred[3] -= half * g_dy;
      grad_target[1] += half * g_dy;
      grad_target[3] += half * g_dy;
    }

    // uni = area_p + area_t - inter
    g_inter -= g_uni;
    g_pw += g_uni * ph;
    g_ph += g_uni * pw;
    g_tw += g_uni * th;
    g_th += g_uni * tw;

    // inter = relu(ix2 - ix1) * relu(iy2 - iy1)
    const T g_iw = relu_backward(iw_raw, g_inter * ih);
    const T g_ih = relu_backward(ih_raw, g_inter * iw);
    max_backward(p[0], t[0], -g_iw, grad_pred[0], grad_target[0]);
    min_backward(p[2], t[2], g_iw, grad_pred[2], grad_target[2]);
    max_backward(p[1], t[1], -g_ih, grad_pred[1], grad_target[1]);
    min_backward(p[3], t[3], g_ih, grad_pred[3], grad_target[3]);

    if constexpr (kEnclosing) {
      enclosing_extent_backward(p[0], p[2], t[0], t[2], g_ew, grad_pred[0], grad_pred[2],
                                grad_target[0], grad_target[2]);
      enclosing_extent_backward(p[1], p[3], t[1], t[3], g_eh, grad_pred[1], grad_pred[3],
                                grad_target[1], grad_target[3]);
    }

    // box widths/heights = relu(x2 - x1)
    const T g_pw_raw = relu_backward(pw_raw, g_pw), g_ph_raw = relu_backward(ph_raw, g_ph);
    const T g_tw_raw = relu_backward(tw_raw, g_tw), g_th_raw = relu_backward(th_raw, g_th);
    grad_pred[0] -= g_pw_raw;
    grad_pred[2] += g_pw_raw;
    grad_pred[1] -= g_ph_raw;
    grad_pred[3] += g_ph_raw;
    grad_target[0] -= g_tw_raw;
    grad_target[2] += g_tw_raw;
    grad_target[1] -= g_th_raw;
    grad_target[3] += g_th_raw;
  }
  return loss;
}

// The plain loss (alpha = 1, no focal factor) with only eps: what box_iou uses.
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss_xyxy(const T (&p)[4], const T (&t)[4], T eps, T (&grad_pred)[4],
                               T (&grad_target)[4]) {
  return iou_loss_xyxy<K, kGrad>(p, t, plain_iou_params(eps), grad_pred, grad_target);
}

// IoU-family loss of a pair of boxes given in `format` (xyxy or cxcywh; deltas are decoded by
// box_loss_element first); gradients come back in that format.
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

template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss(const T (&pred)[4], const T (&target)[4], BoxFormat format, T eps,
                          T (&grad_pred)[4], T (&grad_target)[4]) {
  return iou_loss<K, kGrad>(pred, target, format, plain_iou_params(eps), grad_pred, grad_target);
}

// ----------------------------------------------------------------------------- deltas

// mmdet's DeltaXYWHBBoxCoder: deltas (dx, dy, dw, dh) of a box against an anchor (xyxy), with
// dx = ((gx - ax) / aw - mean0) / std0 and dw = (log(gw / aw) - mean2) / std2, and likewise
// for y and h. Decoding clamps the denormalised dw, dh to +-max_log_ratio.
template <class T>
struct DeltaCoding {
  T means[4];
  T stds[4];
  T max_log_ratio;  // |log(wh_ratio_clip)|
};

// Denormalised dw (k = 2) or dh (k = 3) before and after the clamp.
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

// Coordinate-wise losses (L1, SmoothL1 with mmdet's beta convention) of one coordinate:
// returns the loss and, with kGrad, writes d loss / d pred (d / d target is its negative).
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T coord_loss(T pred, T target, T beta, T& grad_pred) {
  using namespace math;
  static_assert(K == LossKind::L1 || K == LossKind::SmoothL1, "coord_loss takes L1 or SmoothL1");
  const T diff = pred - target;
  const T abs_diff = abs_(diff);
  if constexpr (K == LossKind::L1) {
    if constexpr (kGrad) grad_pred = sign_(diff);
    return abs_diff;
  } else {
    const auto quadratic = abs_diff < beta;
    if constexpr (kGrad) grad_pred = select(quadratic, diff / beta, sign_(diff));
    return select(quadratic, T(0.5) * diff * diff / beta, abs_diff - T(0.5) * beta);
  }
}

// Value of the pairwise similarity `K` (IoU, GIoU, DIoU or CIoU) of two boxes: 1 - its loss.
template <LossKind K, class T>
ALWA_HD_INLINE T iou_value(const T (&box1)[4], const T (&box2)[4], BoxFormat format, T eps) {
  T unused1[4], unused2[4];
  return T(1) - iou_loss<K, false>(box1, box2, format, eps, unused1, unused2);
}


// ----------------------------------------------------------------------------- one box

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
  int64_t num_boxes;
  BoxFormat format;
  bool weight_per_coord;
  // eps, Alpha-IoU's alpha and Focal-EIoU's gamma. eps also floors the widths and heights
  // when L1/SmoothL1 encode the target boxes as deltas.
  IoULossParams<T> iou;
  T beta;
  DeltaCoding<T> deltas;
  // d reduced loss / d element loss: 1 for "none" and "sum", 1/count for "mean"; with
  // avg_factor (a float64 scalar read where the kernel runs, so no host sync) it is further
  // divided by (*avg_factor + kAvgFactorEps).
  T grad_scale;
  const double* avg_factor;
};

// The factor that turns the sum of weighted element losses into the reduced loss, which is
// also the factor on each element's gradient.
template <class scalar_t, class T>
ALWA_HD_INLINE T reduction_scale(const BoxLossArgs<scalar_t, T>& args) {
  return args.avg_factor != nullptr
             ? args.grad_scale / static_cast<T>(*args.avg_factor + kAvgFactorEps)
             : args.grad_scale;
}

// Storage types whose range is narrower than the compute type's (float16: +-65504) declare
// it by specialising this trait (torch's c10::Half in box_loss_plan.h, CUDA's __half beside the
// CUDA kernels). Values are then saturated when stored, so a finite loss or gradient that
// exceeds the storage range (a steep GIoU gradient of a nearly flat box, say) stays finite.
template <class scalar_t>
struct StorageRange {
  static constexpr bool kNarrow = false;
  static constexpr double kMax = 0.0;
};

template <class scalar_t, class T>
ALWA_HD_INLINE scalar_t store_cast(T value) {
  if constexpr (StorageRange<scalar_t>::kNarrow) {
    const T limit = static_cast<T>(StorageRange<scalar_t>::kMax);
    value = math::min_(math::max_(value, -limit), limit);
  }
  return static_cast<scalar_t>(value);
}

template <class T, class scalar_t>
ALWA_HD_INLINE void load_box(const scalar_t* src, T (&box)[4]) {
  for (int k = 0; k < 4; ++k) box[k] = static_cast<T>(src[k]);
}

template <class T, class scalar_t>
ALWA_HD_INLINE void store_box(const T (&box)[4], T scale, scalar_t* dst) {
  for (int k = 0; k < 4; ++k) dst[k] = store_cast<scalar_t>(box[k] * scale);
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
// grad_scale is reduction_scale(args), computed once per thread by the caller.
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
    if (args.loss != nullptr) args.loss[i] = store_cast<scalar_t>(loss);
    if constexpr (kGrad) {
      const T g = weight * grad_scale;
      if (args.grad_pred != nullptr) store_box(grad_p, g, args.grad_pred + 4 * i);
      if (args.grad_target != nullptr) store_box(grad_t, g, args.grad_target + 4 * i);
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
      if (args.loss != nullptr) args.loss[4 * i + k] = store_cast<scalar_t>(loss);
      box_sum += loss;
      grad_p[k] = grad * weight;
      grad_t[k] = -grad_p[k];
    }
    if constexpr (kGrad) {
      if (args.grad_pred != nullptr) store_box(grad_p, grad_scale, args.grad_pred + 4 * i);
      if (args.grad_target != nullptr) {
        if (deltas) encode_deltas_backward(t, anchor, args.deltas, args.iou.eps, grad_t);
        store_box(grad_t, grad_scale, args.grad_target + 4 * i);
      }
    }
    return box_sum;
  }
}

}  // namespace alwa
