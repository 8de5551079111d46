// 16 floats in an AVX-512 register, with the operators and primitives alwa/box_math.h needs
// (see "Primitives" there). Include only from a translation unit compiled for AVX-512
// (box_loss_vec_avx512.cpp), before alwa/box_math.h.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include <type_traits>

namespace alwa {
namespace simd_avx512 {

struct Mask {
  __mmask16 bits;
};

struct Vec {
  static constexpr int kWidth = 16;
  __m512 v;

  Vec() = default;
  explicit Vec(__m512 x) : v(x) {}
  template <class S, std::enable_if_t<std::is_arithmetic<S>::value, int> = 0>
  explicit Vec(S s) : v(_mm512_set1_ps(static_cast<float>(s))) {}

  static Vec load(const float* p) { return Vec(_mm512_loadu_ps(p)); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  Vec& operator+=(Vec o) { v = _mm512_add_ps(v, o.v); return *this; }
  Vec& operator-=(Vec o) { v = _mm512_sub_ps(v, o.v); return *this; }
};

inline Vec operator+(Vec a, Vec b) { return Vec(_mm512_add_ps(a.v, b.v)); }
inline Vec operator-(Vec a, Vec b) { return Vec(_mm512_sub_ps(a.v, b.v)); }
inline Vec operator*(Vec a, Vec b) { return Vec(_mm512_mul_ps(a.v, b.v)); }
inline Vec operator/(Vec a, Vec b) { return Vec(_mm512_div_ps(a.v, b.v)); }
inline Vec operator-(Vec a) { return Vec(_mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f))); }
// Ordered, quiet comparisons: false where either side is NaN, as for scalars.
inline Mask operator<(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask operator>(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline Mask operator==(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
// True where a or b is NaN.
inline Mask unordered_(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_UNORD_Q)}; }

// Primitives, found by argument-dependent lookup from alwa::math's templates.
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return Vec(_mm512_mask_blend_ps(m.bits, if_false.v, if_true.v));
}
// min_(a, b) = b < a ? b : a and max_(a, b) = a < b ? b : a, NaNs and signed zeros included:
// vminps(x, y) = x < y ? x : y.
inline Vec min_(Vec a, Vec b) { return Vec(_mm512_min_ps(b.v, a.v)); }
inline Vec max_(Vec a, Vec b) { return Vec(_mm512_max_ps(b.v, a.v)); }
inline Vec abs_(Vec a) { return Vec(_mm512_abs_ps(a.v)); }
inline Vec fma_(Vec a, Vec b, Vec c) { return Vec(_mm512_fmadd_ps(a.v, b.v, c.v)); }
inline Mask signbit_(Vec a) {
  return {_mm512_test_epi32_mask(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN))};
}
// |magnitude| with the sign bit of sign_source.
inline Vec copysign_(Vec magnitude, Vec sign_source) {
  const __m512i sign_bit = _mm512_set1_epi32(INT32_MIN);
  const __m512i m = _mm512_andnot_si512(sign_bit, _mm512_castps_si512(magnitude.v));
  const __m512i s = _mm512_and_si512(sign_bit, _mm512_castps_si512(sign_source.v));
  return Vec(_mm512_castsi512_ps(_mm512_or_si512(m, s)));
}

// The first n lanes from p (n <= 16), the others `fill`.
inline Vec load_partial(const float* p, int n, float fill) {
  const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
  return Vec(_mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p));
}

// Boxes i..i+15 of an (N, 4) array as four vectors of coordinates (lane j = box i + j), and
// back. Within each 128-bit lane a 4x4 transpose, then one permutation puts the boxes in order
// (element 4q + m holds box 4m + q after the transpose; the permutation is its own inverse).
inline __m512i box_order() {
  return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}
inline void load_boxes(const float* p, Vec (&c)[4]) {
  const __m512 r0 = _mm512_loadu_ps(p), r1 = _mm512_loadu_ps(p + 16);
  const __m512 r2 = _mm512_loadu_ps(p + 32), r3 = _mm512_loadu_ps(p + 48);
  const __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
  const __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
  const __m512i order = box_order();
  c[0] = Vec(_mm512_permutexvar_ps(order, _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0))));
  c[1] = Vec(_mm512_permutexvar_ps(order, _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2))));
  c[2] = Vec(_mm512_permutexvar_ps(order, _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0))));
  c[3] = Vec(_mm512_permutexvar_ps(order, _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2))));
}
inline void store_boxes(float* p, const Vec (&c)[4]) {
  const __m512i order = box_order();
  const __m512 x1 = _mm512_permutexvar_ps(order, c[0].v), y1 = _mm512_permutexvar_ps(order, c[1].v);
  const __m512 x2 = _mm512_permutexvar_ps(order, c[2].v), y2 = _mm512_permutexvar_ps(order, c[3].v);
  const __m512 u0 = _mm512_unpacklo_ps(x1, y1), u1 = _mm512_unpackhi_ps(x1, y1);
  const __m512 u2 = _mm512_unpacklo_ps(x2, y2), u3 = _mm512_unpackhi_ps(x2, y2);
  _mm512_storeu_ps(p, _mm512_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm512_storeu_ps(p + 16, _mm512_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm512_storeu_ps(p + 32, _mm512_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm512_storeu_ps(p + 48, _mm512_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2)));
}

// A sum of float lanes kept in double, lane by lane; total() adds the lanes in a fixed order.
struct DoubleSum {
  __m512d lo, hi;
  // (a written constructor: an implicit one would not get this file's target ISA)
  DoubleSum() : lo(_mm512_setzero_pd()), hi(_mm512_setzero_pd()) {}
  void add(Vec x) {
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x.v)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1))));
  }
  double total() const {
    alignas(64) double lanes[16];
    _mm512_store_pd(lanes, lo);
    _mm512_store_pd(lanes + 8, hi);
    double sum = 0.0;
    for (double lane : lanes) sum += lane;
    return sum;
  }
};

}  // namespace simd_avx512
}  // namespace alwa
