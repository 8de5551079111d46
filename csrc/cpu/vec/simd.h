// A SIMD vector of floats, Vec<Isa>, written once over an ISA's intrinsics (isa_avx2.h,
// isa_avx512.h), with the operators and the primitives the loss math of alwa/box_math.h is
// written in (found by argument-dependent lookup). Include from a translation unit compiled
// for the ISA, after its isa_*.h and before alwa/box_math.h is used on Vec<Isa>.
//
// Everything here is a template on Isa, so each ISA's instantiations have their own names and
// no code compiled for one ISA can be picked by the linker for another.
#pragma once

#include <math.h>
#include <stdint.h>

#include <type_traits>

namespace alwa {
namespace vec {

// A comparison result: which lanes it holds in.
template <class Isa>
struct Mask {
  typename Isa::MaskReg bits;
};

template <class Isa>
struct Vec {
  using Reg = typename Isa::Reg;
  static constexpr int kWidth = Isa::kWidth;
  Reg v;

  Vec() = default;
  explicit Vec(Reg x) : v(x) {}
  template <class S, std::enable_if_t<std::is_arithmetic<S>::value, int> = 0>
  explicit Vec(S s) : v(Isa::set1(static_cast<float>(s))) {}

  static Vec load(const float* p) { return Vec(Isa::load(p)); }
  void store(float* p) const { Isa::store(p, v); }
  Vec& operator+=(Vec o) {
    v = Isa::add(v, o.v);
    return *this;
  }
  Vec& operator-=(Vec o) {
    v = Isa::sub(v, o.v);
    return *this;
  }
  Vec& operator*=(Vec o) {
    v = Isa::mul(v, o.v);
    return *this;
  }
};

template <class Isa>
inline Vec<Isa> operator+(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::add(a.v, b.v)); }
template <class Isa>
inline Vec<Isa> operator-(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::sub(a.v, b.v)); }
template <class Isa>
inline Vec<Isa> operator*(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::mul(a.v, b.v)); }
template <class Isa>
inline Vec<Isa> operator/(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::div(a.v, b.v)); }
template <class Isa>
inline Vec<Isa> operator-(Vec<Isa> a) { return Vec<Isa>(Isa::bits_xor(a.v, Isa::bits_of(INT32_MIN))); }
template <class Isa>
inline Mask<Isa> operator<(Vec<Isa> a, Vec<Isa> b) { return {Isa::lt(a.v, b.v)}; }
template <class Isa>
inline Mask<Isa> operator>(Vec<Isa> a, Vec<Isa> b) { return {Isa::gt(a.v, b.v)}; }
template <class Isa>
inline Mask<Isa> operator==(Vec<Isa> a, Vec<Isa> b) { return {Isa::eq(a.v, b.v)}; }
// True where a or b is NaN.
template <class Isa>
inline Mask<Isa> unordered_(Vec<Isa> a, Vec<Isa> b) { return {Isa::unordered(a.v, b.v)}; }

template <class Isa>
inline Vec<Isa> select(Mask<Isa> m, Vec<Isa> if_true, Vec<Isa> if_false) {
  return Vec<Isa>(Isa::blend(m.bits, if_true.v, if_false.v));
}
// min_(a, b) = b < a ? b : a and max_(a, b) = a < b ? b : a, NaNs and signed zeros included:
// the instructions return their second operand unless the comparison holds.
template <class Isa>
inline Vec<Isa> min_(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::min(b.v, a.v)); }
template <class Isa>
inline Vec<Isa> max_(Vec<Isa> a, Vec<Isa> b) { return Vec<Isa>(Isa::max(b.v, a.v)); }
template <class Isa>
inline Vec<Isa> abs_(Vec<Isa> a) { return Vec<Isa>(Isa::bits_andnot(Isa::bits_of(INT32_MIN), a.v)); }
template <class Isa>
inline Vec<Isa> fma_(Vec<Isa> a, Vec<Isa> b, Vec<Isa> c) { return Vec<Isa>(Isa::fma(a.v, b.v, c.v)); }
template <class Isa>
inline Mask<Isa> signbit_(Vec<Isa> a) { return {Isa::signbit(a.v)}; }
// |magnitude| with the sign bit of sign_source.
template <class Isa>
inline Vec<Isa> copysign_(Vec<Isa> magnitude, Vec<Isa> sign_source) {
  const auto sign_bit = Isa::bits_of(INT32_MIN);
  return Vec<Isa>(Isa::bits_or(Isa::bits_andnot(sign_bit, magnitude.v), Isa::bits_and(sign_bit, sign_source.v)));
}
// The largest power of two <= x (see alwa::math::pow2_floor_): the mantissa bits cleared.
template <class Isa>
inline Vec<Isa> pow2_floor_(Vec<Isa> x) { return Vec<Isa>(Isa::bits_and(x.v, Isa::bits_of(0x7f800000))); }

// The first `count` (0 < count < kWidth) floats at p, the other lanes `fill`, and back.
template <class Isa>
inline Vec<Isa> load_partial(const float* p, int count, float fill) {
  return Vec<Isa>(Isa::load_partial(p, count, fill));
}
template <class Isa>
inline void store_partial(float* p, Vec<Isa> x, int count) {
  Isa::store_partial(p, x.v, count);
}
template <class Isa>
inline float reduce_max(Vec<Isa> x) { return Isa::reduce_max(x.v); }
template <class Isa>
inline float reduce_add(Vec<Isa> x) { return Isa::reduce_add(x.v); }

template <class Isa>
inline Vec<Isa> floor_(Vec<Isa> x) { return Vec<Isa>(Isa::floor(x.v)); }
// A kWidth x kWidth block transposed in place: v[i] lane j <- v[j] lane i.
template <class Isa>
inline void transpose(Vec<Isa> (&v)[Isa::kWidth]) {
  typename Isa::Reg r[Isa::kWidth];
  for (int i = 0; i < Isa::kWidth; ++i) r[i] = v[i].v;
  Isa::transpose(r);
  for (int i = 0; i < Isa::kWidth; ++i) v[i] = Vec<Isa>(r[i]);
}

// Boxes i .. i + kWidth - 1 of an (N, 4) array as four vectors of coordinates, and back.
template <class Isa>
inline void load_boxes(const float* p, Vec<Isa> (&c)[4]) {
  typename Isa::Reg r[4];
  Isa::load_boxes(p, r);
  for (int k = 0; k < 4; ++k) c[k] = Vec<Isa>(r[k]);
}
template <class Isa>
inline void store_boxes(float* p, const Vec<Isa> (&c)[4]) {
  const typename Isa::Reg r[4] = {c[0].v, c[1].v, c[2].v, c[3].v};
  Isa::store_boxes(p, r);
}

// A sum of float lanes kept in double, lane by lane; total() adds the lanes in a fixed order.
template <class Isa>
struct DoubleSum {
  typename Isa::DoubleReg lo, hi;
  // (a written constructor: an implicit one would not get the translation unit's target ISA)
  DoubleSum() : lo(Isa::double_zero()), hi(Isa::double_zero()) {}
  void add(Vec<Isa> x) {
    lo = Isa::double_add(lo, Isa::low_as_double(x.v));
    hi = Isa::double_add(hi, Isa::high_as_double(x.v));
  }
  double total() const {
    double lanes[Isa::kWidth];
    Isa::store_double(lanes, lo);
    Isa::store_double(lanes + Isa::kWidth / 2, hi);
    double sum = 0.0;
    for (double lane : lanes) sum += lane;
    return sum;
  }
};

}  // namespace vec
}  // namespace alwa
