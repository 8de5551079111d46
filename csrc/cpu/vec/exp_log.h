// exp, log, log1p and pow for the SIMD vectors of simd.h, written once over their primitives
// (the focal loss's logistic terms and powers; Alpha-IoU's powers, which the box-loss vector
// path refuses, instantiate pow_ only).
//
// exp: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in two parts, so r is
// exact), e^r by Cephes' degree-6 polynomial, times 2^n built in the exponent bits. log: x =
// 2^k m with m in [sqrt(1/2), sqrt(2)), log(m) by Cephes' polynomial in m - 1, plus k ln2.
// Cephes measured both at about 1 ulp on their domain; tests/test_focal_loss.py checks the
// losses and gradients they give on every SIMD path against float64 and against libm's.
#pragma once

#include "common/macros.h"
#include "cpu/vec/simd.h"

namespace alwa {
namespace vec {

// e^x; 0 below -87.3 (where the result would be subnormal), inf from 88.4 on (n = 128: 2^n
// has the bits of inf; float overflows at 88.72), NaN for NaN (the clamp keeps it, simd.h's
// max_ and min_, and so does every step after it).
template <class Isa>
inline Vec<Isa> exp_(Vec<Isa> x) {
  using V = Vec<Isa>;
  const V clamped = min_(max_(x, V(-87.3f)), V(88.7f));
  const V n = V(Isa::round((clamped * V(1.44269504088896341f)).v));
  V r = fma_(n, V(-0.693359375f), clamped);
  r = fma_(n, V(2.12194440e-4f), r);
  V poly = V(1.9875691500e-4f);
  poly = fma_(poly, r, V(1.3981999507e-3f));
  poly = fma_(poly, r, V(8.3334519073e-3f));
  poly = fma_(poly, r, V(4.1665795894e-2f));
  poly = fma_(poly, r, V(1.6666665459e-1f));
  poly = fma_(poly, r, V(5.0000001201e-1f));
  const V er = fma_(poly, r * r, r + V(1.0f));
  const V out = er * V(Isa::pow2(n.v));
  return select(x < V(-87.3f), V(0.0f), out);
}

// log(2^k (1 + m)) for m in [sqrt(1/2) - 1, sqrt(2) - 1]: Cephes' polynomial in m, plus k ln2
// (ln2 in two parts).
template <class Isa>
inline Vec<Isa> log_reduced(Vec<Isa> m, Vec<Isa> k) {
  using V = Vec<Isa>;
  const V z = m * m;
  V poly = V(7.0376836292e-2f);
  poly = fma_(poly, m, V(-1.1514610310e-1f));
  poly = fma_(poly, m, V(1.1676998740e-1f));
  poly = fma_(poly, m, V(-1.2420140846e-1f));
  poly = fma_(poly, m, V(1.4249322787e-1f));
  poly = fma_(poly, m, V(-1.6668057665e-1f));
  poly = fma_(poly, m, V(2.0000714765e-1f));
  poly = fma_(poly, m, V(-2.4999993993e-1f));
  poly = fma_(poly, m, V(3.3333331174e-1f));
  V y = poly * m * z;
  y = fma_(k, V(-2.12194440e-4f), y);
  y = fma_(z, V(-0.5f), y);
  return fma_(k, V(0.693359375f), m + y);
}

constexpr float kSqrtHalf = 0.707106781186547524f;

// log(x) for x > 0 normal (powers' bases, selected positive); log(0) = -inf, negative x or
// NaN give NaN, +inf gives +inf.
template <class Isa>
inline Vec<Isa> log_(Vec<Isa> x) {
  using V = Vec<Isa>;
  // x = 2^k m with m in [0.5, 1), then m in [sqrt(1/2), sqrt(2)) by moving one factor of 2.
  V k = V(Isa::exponent(x.v)) + V(1.0f);
  V m = V(Isa::bits_or(Isa::bits_and(x.v, Isa::bits_of(0x007fffff)), Isa::bits_of(0x3f000000)));
  const auto small = m < V(kSqrtHalf);
  k = select(small, k - V(1.0f), k);
  m = select(small, m + m, m) - V(1.0f);
  V out = log_reduced(m, k);
  out = select(x == V(0.0f), V(-INFINITY), out);
  out = select(x == V(INFINITY), x, out);
  return select(x < V(0.0f), V(NAN), select(unordered_(x, x), x, out));
}

// log(u) for u in [1, 2] or NaN (the focal loss's 1 + e^-|x|): log_'s result without its
// reduction (u is its own mantissa, halved from sqrt(2) on) or its special cases.
template <class Isa>
inline Vec<Isa> log_1_to_2(Vec<Isa> u) {
  using V = Vec<Isa>;
  const auto low = u < V(2.0f * kSqrtHalf);
  return log_reduced(select(low, u, u * V(0.5f)) - V(1.0f), select(low, V(0.0f), V(1.0f)));
}

// log(1 + x) for x in [0, 1] given u = 1 + x and r = 1 / u: log(u) corrected by the rounding
// of u, (x - (u - 1)) / u, so that x far below 1 keeps its relative precision.
template <class Isa>
inline Vec<Isa> log1p_given_sum(Vec<Isa> x, Vec<Isa> u, Vec<Isa> r) {
  return log_1_to_2(u) + (x - (u - Vec<Isa>(1.0f))) * r;
}

// 1 / x for x in [1, 2] (the focal loss's 1 + exp(-|x|)): an estimate and a Newton step,
// a few ulp at most, instead of a division (the slowest instruction of the loss).
template <class Isa>
inline Vec<Isa> reciprocal_(Vec<Isa> x) {
  return Vec<Isa>(Isa::reciprocal(x.v));
}

// x^a for x > 0 (primitives.h's pow_nonnegative selects the positive bases).
template <class Isa>
inline Vec<Isa> pow_(Vec<Isa> x, Vec<Isa> a) {
  return exp_(a * log_(x));
}

}  // namespace vec
}  // namespace alwa
