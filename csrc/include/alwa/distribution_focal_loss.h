// The distribution focal loss (Li et al., Generalized Focal Loss, 2020), forward and analytic
// backward, written once for the CPU (scalar and SIMD) and CUDA kernels. Torch-free.
//
// A row holds the logits x[0..n) of one distance's distribution over the bins 0..n-1 (a side of
// a box: ultralytics' reg_max bins, mmdet's reg_max + 1) and its target t in [0, n - 1]. With
// l = floor(t), r = l + 1, w_l = r - t, w_r = t - l and lse = log sum_i exp(x_i):
//   loss = w_l (lse - x_l) + w_r (lse - x_r)      (cross-entropy towards both neighbours)
//   d loss / d x_i = (w_l + w_r) p_i - w_l [i = l] - w_r [i = r],   p_i = exp(x_i - lse).
// At t = n - 1 the right bin does not exist and has weight 0. The exponentials are taken
// against the row's maximum, so logits of any finite size give finite values; a NaN logit
// makes the row's loss and gradient NaN, and so does a NaN target (its bins are not read).
// A row whose weight is exactly 0 is skipped: loss and gradient 0, its inputs not read (as
// ultralytics, which takes the loss on the foreground rows only).
#pragma once

#include <stdint.h>

#include "alwa/primitives.h"
#include "common/reduction.h"
#include "common/storage.h"

namespace alwa {

// The two bins a target falls between and their weights. `valid` is false for a NaN target
// (out-of-range targets are refused before a kernel runs: the CPU kernel raises, the CUDA
// kernel asserts on the device); the row then gives NaN.
template <class T>
struct DflBins {
  int64_t left;
  T w_left, w_right;  // w_right = 0 where left = n - 1
  bool valid;
};

// Whether a target can be given to a row of `bins` bins: in [0, bins - 1], or NaN.
template <class T>
ALWA_HD_INLINE bool dfl_target_valid(T t, int64_t bins) {
  return !(t < T(0)) && !(t > static_cast<T>(bins - 1));
}

template <class T>
ALWA_HD_INLINE DflBins<T> dfl_bins(T t, int64_t bins) {
  DflBins<T> out;
  out.valid = t == t;
  if (!out.valid) {
    out.left = 0;
    out.w_left = out.w_right = t;
    return out;
  }
  // floor for t >= 0; t = bins - 1 keeps its own bin with all the weight.
  int64_t left = static_cast<int64_t>(t);
  if (left > bins - 1) left = bins - 1;
  out.left = left;
  // Both differences are exact for left >= 1 (Sterbenz), as mmdet's label - left is.
  out.w_left = static_cast<T>(left + 1) - t;
  out.w_right = t - static_cast<T>(left);
  if (left == bins - 1) {
    out.w_left = T(1);
    out.w_right = T(0);
  }
  return out;
}

// The loss of a row given lse, the two logits it is taken at and their weights (a scalar, or a
// SIMD vector of rows).
template <class T>
ALWA_HD_INLINE T dfl_value(T lse, T x_left, T x_right, T w_left, T w_right) {
  return w_left * (lse - x_left) + w_right * (lse - x_right);
}
template <class T>
ALWA_HD_INLINE T dfl_value(T lse, T x_left, T x_right, const DflBins<T>& b) {
  return dfl_value(lse, x_left, x_right, b.w_left, b.w_right);
}

// d loss / d x_i for bin i with probability p_i (a scalar or a SIMD vector of bins: `is_left`
// and `is_right` are then masks).
template <class T, class Mask>
ALWA_HD_INLINE T dfl_grad(T p, Mask is_left, Mask is_right, T w_left, T w_right) {
  using namespace math;
  return (w_left + w_right) * p - select(is_left, w_left, T(0)) - select(is_right, w_right, T(0));
}

// ----------------------------------------------------------------------------- a call

// Everything a distribution_focal_loss kernel reads and writes, decided on the host. logits
// are contiguous (rows, bins); target and weight one per row, in the compute type (a per-box
// weight is spread over the box's sides by the plan: no division a row).
template <class scalar_t, class T>
struct DflArgs {
  const scalar_t* logits;
  const T* target;
  const T* weight;  // or null
  scalar_t* loss;  // per row for reduction "none", else null
  scalar_t* grad;  // d (weighted, reduced) loss / d logits, or null
  int64_t num_rows, num_bins;
  T grad_scale;  // d reduced loss / d row loss before avg_factor (common/reduction.h)
  const double* avg_factor;
  bool reduce;
};

template <class scalar_t, class T>
ALWA_HD_INLINE T reduction_scale(const DflArgs<scalar_t, T>& args) {
  return reduction_scale(args.grad_scale, args.avg_factor);
}

// The weight of a row (1 without one).
template <class scalar_t, class T>
ALWA_HD_INLINE T dfl_row_weight(const DflArgs<scalar_t, T>& args, int64_t row) {
  return args.weight != nullptr ? args.weight[row] : T(1);
}

// Row `row`: its weighted loss (returned) and its outputs written; grad_scale is
// reduction_scale(args). Two passes over the logits for the maximum and the sum, a third for
// the gradient (each recomputes exp: a row is short and in cache).
template <bool kGrad, class scalar_t, class T>
ALWA_HD_INLINE T dfl_row(const DflArgs<scalar_t, T>& args, int64_t row, T grad_scale) {
  using namespace math;
  const int64_t n = args.num_bins;
  const scalar_t* x = args.logits + row * n;
  const T w = dfl_row_weight(args, row);
  if (args.weight != nullptr && w == T(0)) {
    if (args.loss != nullptr) args.loss[row] = static_cast<scalar_t>(0);
    if constexpr (kGrad) {
      for (int64_t i = 0; i < n; ++i) args.grad[row * n + i] = static_cast<scalar_t>(0);
    }
    return T(0);
  }
  const DflBins<T> b = dfl_bins(args.target[row], n);
  T m = static_cast<T>(x[0]);
  for (int64_t i = 1; i < n; ++i) m = max_(m, static_cast<T>(x[i]));
  T s = T(0);
  for (int64_t i = 0; i < n; ++i) s += exp_(static_cast<T>(x[i]) - m);
  const T lse = m + log_(s);
  const T x_left = static_cast<T>(x[b.left]);
  const T x_right = b.left + 1 < n ? static_cast<T>(x[b.left + 1]) : x_left;
  // s is NaN where a logit is (exp(NaN - m)); an invalid target carries NaN in its weights.
  const T loss = dfl_value(lse, x_left, x_right, b) * w;
  if (args.loss != nullptr) args.loss[row] = saturating_cast<scalar_t>(loss);
  if constexpr (kGrad) {
    const T inv_s = T(1) / s;
    const T scale = w * grad_scale;
    for (int64_t i = 0; i < n; ++i) {
      const T p = exp_(static_cast<T>(x[i]) - m) * inv_s;
      const T g = dfl_grad(p, i == b.left, i == b.left + 1, b.w_left, b.w_right);
      args.grad[row * n + i] = saturating_cast<scalar_t>(g * scale);
    }
  }
  return loss;
}

// ----------------------------------------------------------------------------- the integral

// The expectation of a row's distribution, E = sum_i i p_i (GFL's Integral, ultralytics' box
// decoding: softmax(x) @ arange(n)), and its backward, d E / d x_i = p_i (i - E). The backward
// computes the softmax again rather than keep it (a row is short: no (rows, bins) tensor is kept
// between the passes). NaN in a row gives NaN.
template <class scalar_t, class T>
struct DflIntegralArgs {
  const scalar_t* logits;   // (rows, bins), contiguous
  const scalar_t* grad_in;  // backward: d out / d E, one per row (else null)
  scalar_t* out;            // forward: E; backward: d out / d logits
  int64_t num_rows, num_bins;
};

// The row's maximum m, sum s = sum exp(x_i - m) and first moment sum i exp(x_i - m).
template <class scalar_t, class T>
ALWA_HD_INLINE void dfl_integral_moments(const scalar_t* x, int64_t n, T& m, T& s, T& first) {
  using namespace math;
  m = static_cast<T>(x[0]);
  for (int64_t i = 1; i < n; ++i) m = max_(m, static_cast<T>(x[i]));
  s = T(0);
  first = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T e = exp_(static_cast<T>(x[i]) - m);
    s += e;
    first += static_cast<T>(i) * e;
  }
}

template <class scalar_t, class T>
ALWA_HD_INLINE void dfl_integral_row(const DflIntegralArgs<scalar_t, T>& args, int64_t row) {
  T m, s, first;
  dfl_integral_moments(args.logits + row * args.num_bins, args.num_bins, m, s, first);
  args.out[row] = static_cast<scalar_t>(first / s);
}

template <class scalar_t, class T>
ALWA_HD_INLINE void dfl_integral_backward_row(const DflIntegralArgs<scalar_t, T>& args, int64_t row) {
  using namespace math;
  const int64_t n = args.num_bins;
  const scalar_t* x = args.logits + row * n;
  T m, s, first;
  dfl_integral_moments(x, n, m, s, first);
  const T inv_s = T(1) / s;
  const T mean = first * inv_s;
  const T g = static_cast<T>(args.grad_in[row]);
  for (int64_t i = 0; i < n; ++i) {
    const T p = exp_(static_cast<T>(x[i]) - m) * inv_s;
    args.out[row * n + i] = saturating_cast<scalar_t>(g * p * (static_cast<T>(i) - mean));
  }
}

}  // namespace alwa
