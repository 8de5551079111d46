// The scalar primitives the loss math is written in. The math is branch-free in the data
// (comparisons feed `select`), so a SIMD type that overloads these names (found by
// argument-dependent lookup; csrc/cpu/vec/simd.h) instantiates the same code.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/macros.h"

namespace alwa {
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
ALWA_HD_INLINE float log1p_(float x) { return ::log1pf(x); }
ALWA_HD_INLINE double log1p_(double x) { return ::log1p(x); }
// 1 / x (the SIMD version trades the division for an estimate and a Newton step).
ALWA_HD_INLINE float reciprocal_(float x) { return 1.0f / x; }
ALWA_HD_INLINE double reciprocal_(double x) { return 1.0 / x; }
// log1p(x) given u = 1 + x and r = 1 / u (the SIMD version uses them; libm needs neither).
ALWA_HD_INLINE float log1p_given_sum(float x, float, float) { return ::log1pf(x); }
ALWA_HD_INLINE double log1p_given_sum(double x, double, double) { return ::log1p(x); }
ALWA_HD_INLINE float sqrt_(float x) { return ::sqrtf(x); }
ALWA_HD_INLINE double sqrt_(double x) { return ::sqrt(x); }
ALWA_HD_INLINE float pow_(float x, float y) { return ::powf(x, y); }
ALWA_HD_INLINE double pow_(double x, double y) { return ::pow(x, y); }

// The bits of a float type and where its exponent is.
template <class T>
struct FloatBits;
template <>
struct FloatBits<float> {
  using type = uint32_t;
  static constexpr type kExponent = 0x7f800000u;
};
template <>
struct FloatBits<double> {
  using type = uint64_t;
  static constexpr type kExponent = 0x7ff0000000000000ull;
};

// The largest power of two <= x for positive normal x, 0 for zero or subnormal x, and inf for
// inf or NaN: x with its mantissa bits cleared.
template <class T>
ALWA_HD_INLINE T pow2_floor_(T x) {
  typename FloatBits<T>::type bits;
  memcpy(&bits, &x, sizeof(bits));
  bits &= FloatBits<T>::kExponent;
  T out;
  memcpy(&out, &bits, sizeof(out));
  return out;
}

// 0 where x is finite, NaN where it is NaN or +-inf: added to a result, it makes a
// non-finite input show in the output whatever the min/max/clamps on the way did with it.
template <class T>
ALWA_HD_INLINE T nan_unless_finite(T x) {
  return x - x;
}

// num / den, and 0 where den <= 0 (only reachable with eps = 0); NaN stays NaN.
template <class T>
ALWA_HD_INLINE T safe_div(T num, T den) {
  const auto positive = den > T(0);
  const T quotient = num / select(positive, den, T(1));
  // num * 0 and den - den are 0 for finite values and NaN where either is NaN.
  return select(positive, quotient, num * T(0) + (den - den));
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
// Backward of clamp(x, lo, hi): the gradient passes where lo <= x <= hi (autograd's choice).
template <class T>
ALWA_HD_INLINE T clamp_backward(T x, T lo, T hi, T grad) {
  return select(x < lo, T(0), select(hi < x, T(0), grad));
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

}  // namespace math
}  // namespace alwa
