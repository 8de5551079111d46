// The sigmoid focal loss (Lin et al., RetinaNet), forward and analytic backward, written once
// for the CPU (scalar and SIMD) and CUDA kernels. Torch-free: compiles with nvcc or a host
// compiler alone. `T` is the compute type (float for the half types, or double), or a SIMD type
// with the primitives of primitives.h and exp_/log_ (csrc/cpu/vec/exp_log.h).
//
// Per element, with p = sigmoid(x) and a target t in [0, 1]:
//   loss = a_t (1 - p_t)^gamma (-log p_t),  p_t = t p + (1 - t)(1 - p),
//   a_t = t alpha + (1 - t)(1 - alpha)  (1 when alpha is off),
// the log term being binary cross-entropy, -(t log p + (1 - t) log(1 - p)) (torchvision's and
// mmdet's extension to soft targets).
//
// Everything comes from e = exp(-|x|), one log1p(e) and one 1 / (1 + e): sigmoid(+-x) is
// 1 / (1 + e) or e / (1 + e), softplus(+-x) = max(+-x, 0) + log1p(e). No 1 - p is ever taken,
// so |x| = 100 keeps its relative precision and gives finite values and gradients in every
// dtype. NaN in gives NaN out (every term carries x).
//
// Hard targets (class indices): with z = -x for a positive element and x for a negative one,
// 1 - p_t = sigmoid(z) and -log p_t = softplus(z), so
//   loss = a_t sigmoid(z)^gamma softplus(z),
//   d loss / dz = a_t sigmoid(z)^gamma (gamma sigmoid(-z) softplus(z) + sigmoid(z)),
// with no power below 0 even for gamma < 1 (sigmoid(z)^(gamma - 1) sigmoid(z) sigmoid(-z) is
// taken as sigmoid(z)^gamma sigmoid(-z)). sigmoid(z)^gamma = exp(-gamma softplus(-z)), one more
// exp; gamma = 2 (everyone's default) is a product instead, and gamma = 0 (binary cross-entropy,
// YOLO's classification loss) no factor at all.
#pragma once

#include <stdint.h>

#include "alwa/primitives.h"
#include "common/reduction.h"
#include "common/storage.h"

namespace alwa {

// The focusing exponents with a path of their own (FocalGamma::General: any other), chosen on
// the host from the value of gamma.
enum class FocalGamma : int { General = 0, Two = 1, Zero = 2 };

// alpha_pos weighs the positives (alpha), alpha_neg the negatives (1 - alpha); both 1 when
// alpha is off (torchvision's alpha < 0).
template <class T>
struct FocalParams {
  T alpha_pos, alpha_neg, gamma;
};

// The pieces of sigmoid(+-x) and softplus(+-x): e = exp(-|x|), r = 1 / (1 + e), log1p(e).
template <class T>
struct LogisticParts {
  T e, r, log1p_e;
};

template <class T>
ALWA_HD_INLINE LogisticParts<T> logistic_parts(T x) {
  using namespace math;
  const T e = exp_(-abs_(x));
  const T u = T(1) + e;
  const T r = reciprocal_(u);
  return LogisticParts<T>{e, r, log1p_given_sum(e, u, r)};
}

// base^gamma for base = sigmoid(z) given softplus(-z) = -log(base).
template <FocalGamma kGamma, class T>
ALWA_HD_INLINE T sigmoid_power(T base, T softplus_neg, T gamma) {
  using namespace math;
  if constexpr (kGamma == FocalGamma::Two) {
    return base * base;
  } else if constexpr (kGamma == FocalGamma::Zero) {
    return T(1);
  } else {
    return exp_(-gamma * softplus_neg);
  }
}

// The focal loss of one element with a hard target (`positive`: a bool, or a SIMD mask);
// with kGrad also writes d loss / d x.
template <bool kGrad, FocalGamma kGamma, class T, class Mask>
ALWA_HD_INLINE T focal_loss_hard(T x, Mask positive, const FocalParams<T>& params, T& grad) {
  using namespace math;
  const LogisticParts<T> parts = logistic_parts(x);
  const T z = select(positive, -x, x);
  const auto z_negative = z < T(0);
  const T er = parts.e * parts.r;
  const T sigmoid_z = select(z_negative, er, parts.r);
  const T softplus_z = max_(z, T(0)) + parts.log1p_e;
  const T softplus_neg_z = max_(-z, T(0)) + parts.log1p_e;
  const T alpha_t = select(positive, params.alpha_pos, params.alpha_neg);
  const T modulator = alpha_t * sigmoid_power<kGamma>(sigmoid_z, softplus_neg_z, params.gamma);
  if constexpr (kGrad) {
    const T sigmoid_neg_z = select(z_negative, parts.r, er);
    T dz;
    if constexpr (kGamma == FocalGamma::Zero) {
      dz = modulator * sigmoid_z;
    } else {
      dz = modulator * (params.gamma * sigmoid_neg_z * softplus_z + sigmoid_z);
    }
    grad = select(positive, -dz, dz);
  }
  return modulator * softplus_z;
}

// The same for a soft target t in [0, 1] (the general formula; equal to the hard one at 0 and 1):
//   d loss / dx = a_t [gamma m^(gamma - 1) (1 - 2t) p (1 - p) B + m^gamma (p - t)],
// m = 1 - p_t, B = -log p_t (a_t does not depend on x).
template <bool kGrad, FocalGamma kGamma, class T>
ALWA_HD_INLINE T focal_loss_soft(T x, T t, const FocalParams<T>& params, T& grad) {
  using namespace math;
  const LogisticParts<T> parts = logistic_parts(x);
  const auto x_negative = x < T(0);
  const T er = parts.e * parts.r;
  const T p = select(x_negative, er, parts.r);      // sigmoid(x)
  const T q = select(x_negative, parts.r, er);      // sigmoid(-x) = 1 - p
  const T softplus_neg_x = max_(-x, T(0)) + parts.log1p_e;  // -log p
  const T bce = softplus_neg_x + (T(1) - t) * x;   // -(t log p + (1 - t) log(1 - p))
  const T m = t * q + (T(1) - t) * p;               // 1 - p_t
  const T alpha_t = t * params.alpha_pos + (T(1) - t) * params.alpha_neg;
  T power;
  if constexpr (kGamma == FocalGamma::Two) {
    power = m * m;
  } else if constexpr (kGamma == FocalGamma::Zero) {
    power = T(1);
  } else {
    power = pow_nonnegative(m, params.gamma);
  }
  if constexpr (kGrad) {
    // gamma m^(gamma - 1) p q: for gamma = 2 it is 2 m p q; else m^gamma (p q / m), 0 where m = 0
    // (there m^gamma = 0 as well, for gamma > 0; for gamma = 0 the term has the factor gamma).
    T slope;
    if constexpr (kGamma == FocalGamma::Two) {
      slope = T(2) * m * p * q;
    } else if constexpr (kGamma == FocalGamma::Zero) {
      slope = T(0);
    } else {
      const auto m_positive = m > T(0);
      slope = params.gamma * power * select(m_positive, p * q / select(m_positive, m, T(1)), T(0));
    }
    grad = alpha_t * (slope * (T(1) - T(2) * t) * bce + power * (p - t));
  }
  return alpha_t * power * bce;
}

// ----------------------------------------------------------------------------- a call

// Everything a sigmoid_focal_loss kernel reads and writes, decided on the host and passed by
// value. logits (and soft targets, and a per-element weight) are contiguous (rows, classes);
// labels and a per-row weight have one value per row. Outputs not asked for are null.
template <class scalar_t, class T>
struct FocalLossArgs {
  const scalar_t* logits;
  const int64_t* labels;         // class indices (num_classes: background), or null
  const scalar_t* soft_targets;  // or these, the logits' shape
  const scalar_t* weight;        // null, per row or per element
  bool weight_per_element;
  scalar_t* loss;  // per element for reduction "none", else null
  scalar_t* grad;  // d (weighted, reduced) loss / d logits, or null
  int64_t num_rows, num_classes;
  FocalParams<T> params;
  // d reduced loss / d element loss before avg_factor (common/reduction.h).
  T grad_scale;
  const double* avg_factor;
  bool reduce;
};

template <class scalar_t, class T>
ALWA_HD_INLINE T reduction_scale(const FocalLossArgs<scalar_t, T>& args) {
  return reduction_scale(args.grad_scale, args.avg_factor);
}

// Whether a label is a class index or the background (num_classes); anything else is an error
// the kernels report (the CPU kernel raises, the CUDA kernel asserts on the device).
ALWA_HD_INLINE bool focal_label_valid(int64_t label, int64_t num_classes) {
  return label >= 0 && label <= num_classes;
}

// Element (row, col): its weighted loss (returned), and its outputs written. grad_scale is
// reduction_scale(args), computed once by the caller.
template <bool kGrad, FocalGamma kGamma, class scalar_t, class T>
ALWA_HD_INLINE T focal_loss_element(const FocalLossArgs<scalar_t, T>& args, int64_t row,
                                    int64_t col, T grad_scale) {
  const int64_t i = row * args.num_classes + col;
  const T x = static_cast<T>(args.logits[i]);
  T grad = T(0);
  T loss;
  if (args.labels != nullptr) {
    loss = focal_loss_hard<kGrad, kGamma>(x, args.labels[row] == col, args.params, grad);
  } else {
    loss = focal_loss_soft<kGrad, kGamma>(x, static_cast<T>(args.soft_targets[i]), args.params,
                                             grad);
  }
  if (args.weight != nullptr) {
    const T w = static_cast<T>(args.weight[args.weight_per_element ? i : row]);
    loss = loss * w;
    grad = grad * w;
  }
  if (args.loss != nullptr) args.loss[i] = saturating_cast<scalar_t>(loss);
  if constexpr (kGrad) args.grad[i] = saturating_cast<scalar_t>(grad * grad_scale);
  return loss;
}

}  // namespace alwa
