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
//   widths and heights are clamped at 0, so inverted corners describe an empty box;
//   IoU = I / (U + eps); GIoU enclosing area + eps; DIoU/CIoU diagonal^2 + eps;
//   CIoU aspect term uses atan2(w, h) (= atan(w / h) for h > 0, finite for h = 0) and
//   alpha = v / (1 - IoU + v + eps) is a constant for the gradient;
//   every quotient whose denominator is 0 (possible only with eps = 0) is taken as 0.
// Gradients follow autograd's subgradient choices: clamp(x, 0) passes the gradient only for
// x > 0, min/max split it evenly on ties, |x| has gradient 0 at 0.
#pragma once

#include <math.h>
#include <stdint.h>

#include "alwa/macros.h"

namespace alwa {

enum class LossKind : int { IoU = 0, GIoU = 1, DIoU = 2, CIoU = 3, L1 = 4, SmoothL1 = 5 };
enum class BoxFormat : int { XYXY = 0, CXCYWH = 1 };
enum class Reduction : int { None = 0, Sum = 1, Mean = 2 };

ALWA_HOST_DEVICE constexpr bool is_iou_family(LossKind kind) {
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

}  // namespace math

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

// IoU-family loss of one (pred, target) pair of xyxy boxes: returns 1 - IoU plus the kind's
// penalty. With kGrad it also writes d loss / d pred into grad_pred and d loss / d target
// into grad_target (both overwritten).
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss_xyxy(const T (&p)[4], const T (&t)[4], T eps, T (&grad_pred)[4],
                               T (&grad_target)[4]) {
  using namespace math;
  static_assert(is_iou_family(K), "iou_loss_xyxy takes an IoU-family kind");
  const T zero(0), one(1);

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
  const T uni = area_p + area_t - inter;
  const T den_u = uni + eps;
  const T iou = safe_div(inter, den_u);
  T loss = one - iou;

  // Enclosing box: GIoU uses its area, DIoU and CIoU its squared diagonal.
  T ex1 = zero, ey1 = zero, ex2 = zero, ey2 = zero, ew_raw = zero, eh_raw = zero, ew = zero,
    eh = zero;
  if constexpr (K != LossKind::IoU) {
    ex1 = min_(p[0], t[0]);
    ey1 = min_(p[1], t[1]);
    ex2 = max_(p[2], t[2]);
    ey2 = max_(p[3], t[3]);
    ew_raw = ex2 - ex1;
    eh_raw = ey2 - ey1;
    ew = max_(ew_raw, zero);
    eh = max_(eh_raw, zero);
  }
  T area_c = zero, den_c = zero;
  if constexpr (K == LossKind::GIoU) {
    area_c = ew * eh;
    den_c = area_c + eps;
    loss += safe_div(area_c - uni, den_c);
  }
  // Centre offset (target minus prediction), squared distance and squared diagonal.
  T dx = zero, dy = zero, rho = zero, diag = zero;
  if constexpr (K == LossKind::DIoU || K == LossKind::CIoU) {
    dx = T(0.5) * ((t[0] + t[2]) - (p[0] + p[2]));
    dy = T(0.5) * ((t[1] + t[3]) - (p[1] + p[3]));
    rho = dx * dx + dy * dy;
    diag = ew * ew + eh * eh + eps;
    loss += safe_div(rho, diag);
  }
  // Aspect-ratio consistency v = 4/pi^2 (atan(wt/ht) - atan(wp/hp))^2, weighted by alpha.
  constexpr double kFourOverPiSquared = 0.40528473456935108578;
  T dtheta = zero, alpha = zero;
  if constexpr (K == LossKind::CIoU) {
    dtheta = atan2_(tw, th) - atan2_(pw, ph);
    const T v = T(kFourOverPiSquared) * dtheta * dtheta;
    alpha = safe_div(v, one - iou + v + eps);
    loss += alpha * v;
  }
  if constexpr (!kGrad) {
    return loss;
  }

  for (int k = 0; k < 4; ++k) {
    grad_pred[k] = zero;
    grad_target[k] = zero;
  }
  // loss = 1 - inter / den_u + ...; inter and uni are treated as independent here and the
  // dependence of uni on inter (uni = area_p + area_t - inter) is applied below.
  const T inv_den_u = safe_div(one, den_u);
  T g_inter = -inv_den_u;
  T g_uni = iou * inv_den_u;
  T g_ew = zero, g_eh = zero;
  T g_pw = zero, g_ph = zero, g_tw = zero, g_th = zero;
  if constexpr (K == LossKind::GIoU) {
    // d/dC (C - U)/(C + eps) = (U + eps)/(C + eps)^2; d/dU = -1/(C + eps).
    const T inv_den_c = safe_div(one, den_c);
    const T g_area_c = safe_div(uni + eps, den_c) * inv_den_c;
    g_uni -= inv_den_c;
    g_ew += g_area_c * eh;
    g_eh += g_area_c * ew;
  }
  if constexpr (K == LossKind::DIoU || K == LossKind::CIoU) {
    const T inv_diag = safe_div(one, diag);
    const T g_diag = -safe_div(rho, diag) * inv_diag;
    g_ew += T(2) * ew * g_diag;
    g_eh += T(2) * eh * g_diag;
    const T g_dx = T(2) * dx * inv_diag, g_dy = T(2) * dy * inv_diag;
    // dx = ((t0 + t2) - (p0 + p2)) / 2
    grad_pred[0] -= T(0.5) * g_dx;
    grad_pred[2] -= T(0.5) * g_dx;
    grad_target[0] += T(0.5) * g_dx;
    grad_target[2] += T(0.5) * g_dx;
    grad_pred[1] -= T(0.5) * g_dy;
    grad_pred[3] -= T(0.5) * g_dy;
    grad_target[1] += T(0.5) * g_dy;
    grad_target[3] += T(0.5) * g_dy;
  }
  if constexpr (K == LossKind::CIoU) {
    // d(alpha v)/d dtheta with alpha constant; d atan2(w, h) = (h dw - w dh) / (w^2 + h^2).
    const T g_dtheta = alpha * T(2 * kFourOverPiSquared) * dtheta;
    const T norm_p = pw * pw + ph * ph, norm_t = tw * tw + th * th;
    g_pw -= g_dtheta * safe_div(ph, norm_p);
    g_ph += g_dtheta * safe_div(pw, norm_p);
    g_tw += g_dtheta * safe_div(th, norm_t);
    g_th -= g_dtheta * safe_div(tw, norm_t);
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

  if constexpr (K != LossKind::IoU) {
    // enclosing width/height = relu(max(x2) - min(x1))
    const T g_ew_raw = relu_backward(ew_raw, g_ew);
    const T g_eh_raw = relu_backward(eh_raw, g_eh);
    min_backward(p[0], t[0], -g_ew_raw, grad_pred[0], grad_target[0]);
    max_backward(p[2], t[2], g_ew_raw, grad_pred[2], grad_target[2]);
    min_backward(p[1], t[1], -g_eh_raw, grad_pred[1], grad_target[1]);
    max_backward(p[3], t[3], g_eh_raw, grad_pred[3], grad_target[3]);
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
  return loss;
}

// IoU-family loss of a pair of boxes given in `format`; gradients come back in that format.
template <LossKind K, bool kGrad, class T>
ALWA_HD_INLINE T iou_loss(const T (&pred)[4], const T (&target)[4], BoxFormat format, T eps,
                          T (&grad_pred)[4], T (&grad_target)[4]) {
  if (format == BoxFormat::XYXY) {
    return iou_loss_xyxy<K, kGrad>(pred, target, eps, grad_pred, grad_target);
  }
  T p[4], t[4];
  cxcywh_to_xyxy(pred, p);
  cxcywh_to_xyxy(target, t);
  const T loss = iou_loss_xyxy<K, kGrad>(p, t, eps, grad_pred, grad_target);
  if constexpr (kGrad) {
    xyxy_grad_to_cxcywh(grad_pred);
    xyxy_grad_to_cxcywh(grad_target);
  }
  return loss;
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
  const scalar_t* pred;
  const scalar_t* target;
  const scalar_t* weight;  // null, (N) per box or (N, 4) per coordinate
  scalar_t* loss;          // per element for reduction "none", else null
  scalar_t* grad_pred;
  scalar_t* grad_target;
  int64_t num_boxes;
  BoxFormat format;
  bool weight_per_coord;
  T eps;
  T beta;
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

template <class T, class scalar_t>
ALWA_HD_INLINE void load_box(const scalar_t* src, T (&box)[4]) {
  for (int k = 0; k < 4; ++k) box[k] = static_cast<T>(src[k]);
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
template <LossKind K, bool kGrad, class scalar_t, class T, class Loader = ScalarBoxLoader>
ALWA_HD_INLINE T box_loss_element(const BoxLossArgs<scalar_t, T>& args, int64_t i, T grad_scale,
                                  Loader load = {}) {
  T p[4], t[4];
  load(args.pred + 4 * i, p);
  load(args.target + 4 * i, t);
  const scalar_t* w = args.weight;
  if constexpr (is_iou_family(K)) {
    T weight = T(1);
    if (w != nullptr) {
      weight = args.weight_per_coord
                   ? (T(w[4 * i]) + T(w[4 * i + 1]) + T(w[4 * i + 2]) + T(w[4 * i + 3])) * T(0.25)
                   : T(w[i]);
    }
    T grad_p[4], grad_t[4];
    const T loss = iou_loss<K, kGrad>(p, t, args.format, args.eps, grad_p, grad_t) * weight;
    if (args.loss != nullptr) args.loss[i] = static_cast<scalar_t>(loss);
    if constexpr (kGrad) {
      const T g = weight * grad_scale;
      for (int k = 0; k < 4; ++k) {
        if (args.grad_pred != nullptr) args.grad_pred[4 * i + k] = static_cast<scalar_t>(grad_p[k] * g);
        if (args.grad_target != nullptr) args.grad_target[4 * i + k] = static_cast<scalar_t>(grad_t[k] * g);
      }
    }
    return loss;
  } else {
    T box_sum = T(0);
    for (int k = 0; k < 4; ++k) {
      T weight = T(1);
      if (w != nullptr) weight = T(w[args.weight_per_coord ? 4 * i + k : i]);
      T grad = T(0);
      const T loss = coord_loss<K, kGrad>(p[k], t[k], args.beta, grad) * weight;
      if (args.loss != nullptr) args.loss[4 * i + k] = static_cast<scalar_t>(loss);
      box_sum += loss;
      if constexpr (kGrad) {
        const T g = grad * weight * grad_scale;
        if (args.grad_pred != nullptr) args.grad_pred[4 * i + k] = static_cast<scalar_t>(g);
        if (args.grad_target != nullptr) args.grad_target[4 * i + k] = static_cast<scalar_t>(-g);
      }
    }
    return box_sum;
  }
}

}  // namespace alwa
