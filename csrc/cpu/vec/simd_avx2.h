// 8 floats in an AVX2 register, with the operators and primitives alwa/box_math.h needs (see
// "Primitives" there). Include only from a translation unit compiled for AVX2 + FMA
// (box_loss_vec_avx2.cpp), before alwa/box_math.h.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include <type_traits>

namespace alwa {
namespace simd_avx2 {

// A comparison result: all bits set in the lanes where it holds.
struct Mask {
  __m256 bits;
};

struct Vec {
  static constexpr int kWidth = 8;
  __m256 v;

  Vec() = default;
  explicit Vec(__m256 x) : v(x) {}
  template <class S, std::enable_if_t<std::is_arithmetic<S>::value, int> = 0>
  explicit Vec(S s) : v(_mm256_set1_ps(static_cast<float>(s))) {}

  static Vec load(const float* p) { return Vec(_mm256_loadu_ps(p)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  Vec& operator+=(Vec o) { v = _mm256_add_ps(v, o.v); return *this; }
  Vec& operator-=(Vec o) { v = _mm256_sub_ps(v, o.v); return *this; }
};

inline Vec operator+(Vec a, Vec b) { return Vec(_mm256_add_ps(a.v, b.v)); }
inline Vec operator-(Vec a, Vec b) { return Vec(_mm256_sub_ps(a.v, b.v)); }
inline Vec operator*(Vec a, Vec b) { return Vec(_mm256_mul_ps(a.v, b.v)); }
inline Vec operator/(Vec a, Vec b) { return Vec(_mm256_div_ps(a.v, b.v)); }
inline Vec operator-(Vec a) { return Vec(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))); }
// Ordered, quiet comparisons: false where either side is NaN, as for scalars.
inline Mask operator<(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask operator>(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline Mask operator==(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
// True where a or b is NaN.
inline Mask unordered_(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_UNORD_Q)}; }

// Primitives, found by argument-dependent lookup from alwa::math's templates.
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return Vec(_mm256_blendv_ps(if_false.v, if_true.v, m.bits));
}
// min_(a, b) = b < a ? b : a and max_(a, b) = a < b ? b : a, NaNs and signed zeros included:
// vminps(x, y) = x < y ? x : y.
inline Vec min_(Vec a, Vec b) { return Vec(_mm256_min_ps(b.v, a.v)); }
inline Vec max_(Vec a, Vec b) { return Vec(_mm256_max_ps(b.v, a.v)); }
inline Vec abs_(Vec a) { return Vec(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)); }
inline Vec fma_(Vec a, Vec b, Vec c) { return Vec(_mm256_fmadd_ps(a.v, b.v, c.v)); }
inline Mask signbit_(Vec a) {
  return {_mm256_castsi256_ps(_mm256_srai_epi32(_mm256_castps_si256(a.v), 31))};
}
// |magnitude| with the sign bit of sign_source.
inline Vec copysign_(Vec magnitude, Vec sign_source) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  return Vec(_mm256_or_ps(_mm256_andnot_ps(sign_bit, magnitude.v), _mm256_and_ps(sign_bit, sign_source.v)));
}

// The first n lanes from p (n <= 8), the others `fill`.
inline Vec load_partial(const float* p, int n, float fill) {
  alignas(32) float lanes[8];
  for (int j = 0; j < 8; ++j) lanes[j] = j < n ? p[j] : fill;
  return Vec(_mm256_load_ps(lanes));
}

// Boxes i..i+7 of an (N, 4) array as four vectors of coordinates (lane j = box i + j), and
// back. Within each 128-bit lane a 4x4 transpose (element 4q + m then holds box 2m + q), then
// one permutation puts the boxes in order.
inline void load_boxes(const float* p, Vec (&c)[4]) {
  const __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + 8);
  const __m256 r2 = _mm256_loadu_ps(p + 16), r3 = _mm256_loadu_ps(p + 24);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  c[0] = Vec(_mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), order));
  c[1] = Vec(_mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)), order));
  c[2] = Vec(_mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), order));
  c[3] = Vec(_mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)), order));
}
inline void store_boxes(float* p, const Vec (&c)[4]) {
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // inverse of load's
  const __m256 x1 = _mm256_permutevar8x32_ps(c[0].v, order), y1 = _mm256_permutevar8x32_ps(c[1].v, order);
  const __m256 x2 = _mm256_permutevar8x32_ps(c[2].v, order), y2 = _mm256_permutevar8x32_ps(c[3].v, order);
  const __m256 u0 = _mm256_unpacklo_ps(x1, y1), u1 = _mm256_unpackhi_ps(x1, y1);
  const __m256 u2 = _mm256_unpacklo_ps(x2, y2), u3 = _mm256_unpackhi_ps(x2, y2);
  _mm256_storeu_ps(p, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_storeu_ps(p + 8, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm256_storeu_ps(p + 16, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_storeu_ps(p + 24, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2)));
}

// A sum of float lanes kept in double, lane by lane; total() adds the lanes in a fixed order.
struct DoubleSum {
  __m256d lo, hi;
  // (a written constructor: an implicit one would not get this file's target ISA)
  DoubleSum() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
  void add(Vec x) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x.v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x.v, 1)));
  }
  double total() const {
    alignas(32) double lanes[8];
    _mm256_store_pd(lanes, lo);
    _mm256_store_pd(lanes + 4, hi);
    double sum = 0.0;
    for (double lane : lanes) sum += lane;
    return sum;
  }
};

}  // namespace simd_avx2
}  // namespace alwa
