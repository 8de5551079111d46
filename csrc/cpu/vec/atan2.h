// atan2 for the SIMD vectors of simd.h, written once over their primitives.
//
// atan(a) on [0, 1] is a + a s P(s) with s = a^2 and P of degree 7, fitted for minimax relative
// error (1.7e-8 in exact arithmetic, below float's half ulp); the octant and quadrant are then
// restored exactly as atan2 does: pi/2 - r when |y| > |x|, pi - r when x has its sign bit set,
// and the sign of y. Special cases follow C's atan2f: atan2(+-0, +0) = +-0, atan2(+-0, -0) =
// +-pi, equal infinities give the pi/4 family, NaN in either input gives NaN. Measured error
// against a double-precision atan2: see tests/test_cpu_isa.py.
#pragma once

#include "common/macros.h"
#include "cpu/vec/simd.h"

namespace alwa {
namespace vec {

template <class V>
ALWA_INLINE V atan2_poly(V y, V x) {
  const V ax = abs_(x), ay = abs_(y);
  const V lo = min_(ax, ay), hi = max_(ax, ay);
  // a = lo / hi in [0, 1]; 0 / 0 -> 0 and inf / inf -> 1.
  V a = select(lo == hi, V(1.0f), lo / hi);
  a = select(hi > V(0.0f), a, V(0.0f));
  const V s = a * a;
  V poly = V(0.0029206882326492877f);
  poly = fma_(poly, s, V(-0.016367912909752216f));
  poly = fma_(poly, s, V(0.04321183791432613f));
  poly = fma_(poly, s, V(-0.075522125043649f));
  poly = fma_(poly, s, V(0.10666003889906163f));
  poly = fma_(poly, s, V(-0.14211055140277143f));
  poly = fma_(poly, s, V(0.1999377281769002f));
  poly = fma_(poly, s, V(-0.3333315273550482f));
  V r = fma_(a * s, poly, a);
  // pi/2 and pi as a float plus the float of the remainder.
  const V half_pi_hi(1.57079637e+00f), half_pi_lo(-4.37113883e-08f);
  const V pi_hi(3.14159274e+00f), pi_lo(-8.74227766e-08f);
  r = select(ay > ax, (half_pi_hi - r) + half_pi_lo, r);
  r = select(signbit_(x), (pi_hi - r) + pi_lo, r);
  r = copysign_(r, y);
  return select(unordered_(x, y), x + y, r);
}

// The atan2 alwa/box_math.h's CIoU calls on Vec<Isa>.
template <class Isa>
inline Vec<Isa> atan2_(Vec<Isa> y, Vec<Isa> x) {
  return atan2_poly(y, x);
}

}  // namespace vec
}  // namespace alwa
