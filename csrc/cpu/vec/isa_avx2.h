// The AVX2 + FMA intrinsics behind simd.h's Vec<Avx2>: 8 floats a register. Include only from
// a translation unit compiled for AVX2 + FMA (vec_avx2.cpp).
#pragma once

#include <immintrin.h>

namespace alwa {
namespace vec {

struct Avx2 {
  using Reg = __m256;
  using MaskReg = __m256;  // all bits set in the lanes where a comparison holds
  static constexpr int kWidth = 8;

  static Reg set1(float s) { return _mm256_set1_ps(s); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm256_storeu_ps(p, x); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  // Ordered, quiet comparisons: false where either side is NaN, as for scalars.
  static MaskReg lt(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static MaskReg gt(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static MaskReg eq(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static MaskReg unordered(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
  static Reg blend(MaskReg m, Reg if_true, Reg if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  // vminps(x, y) = x < y ? x : y (NaNs and signed zeros included).
  static Reg min(Reg x, Reg y) { return _mm256_min_ps(x, y); }
  static Reg max(Reg x, Reg y) { return _mm256_max_ps(x, y); }
  static Reg bits_and(Reg a, Reg b) { return _mm256_and_ps(a, b); }
  static Reg bits_andnot(Reg a, Reg b) { return _mm256_andnot_ps(a, b); }  // ~a & b
  static Reg bits_xor(Reg a, Reg b) { return _mm256_xor_ps(a, b); }
  static Reg bits_or(Reg a, Reg b) { return _mm256_or_ps(a, b); }
  static Reg bits_of(int bits) { return _mm256_castsi256_ps(_mm256_set1_epi32(bits)); }
  static MaskReg signbit(Reg a) {
    return _mm256_castsi256_ps(_mm256_srai_epi32(_mm256_castps_si256(a), 31));
  }
  // 1 / x to about 1 ulp: the 12-bit estimate and one Newton step (exp_log.h's reciprocal_).
  static Reg reciprocal(Reg x) {
    const Reg r = _mm256_rcp_ps(x);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(x, r, _mm256_set1_ps(2.0f)));
  }
  // The nearest integer (ties to even); 2^n for an integral n in [-126, 127] (128 gives the
  // bits of inf); the unbiased exponent of a positive normal x (exp_log.h).
  static Reg round(Reg x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg pow2(Reg n) {
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
  }
  static Reg exponent(Reg x) {
    const __m256i biased = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(biased, _mm256_set1_epi32(127)));
  }

  // The first `count` (< 8) floats at p, the other lanes `fill`; stores of the first `count`
  // lanes. Nothing past p + count is touched (the masked instructions do not fault there).
  static __m256i first_lanes(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Reg load_partial(const float* p, int count, float fill) {
    const __m256i lanes = first_lanes(count);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, lanes), _mm256_castsi256_ps(lanes));
  }
  static void store_partial(float* p, Reg x, int count) { _mm256_maskstore_ps(p, first_lanes(count), x); }
  // The lanes' maximum and sum (each in a fixed order of pairs).
  static float reduce_max(Reg x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float reduce_add(Reg x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }

  // The largest integer <= x.
  static Reg floor(Reg x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // r[i] lane j <- r[j] lane i: unpacks and shuffles within 128-bit lanes, then swaps of halves.
  static void transpose(Reg (&r)[8]) {
    Reg a[8], b[8];
    for (int i = 0; i < 4; ++i) {
      a[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      a[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      b[4 * i] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      b[4 * i + 1] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      b[4 * i + 2] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      b[4 * i + 3] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; ++k) {
      r[k] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x20);
      r[k + 4] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x31);
    }
  }

  // Boxes i..i+7 of an (N, 4) array as four registers of coordinates (lane j = box i + j), and
  // back. Within each 128-bit lane a 4x4 transpose (element 4q + m then holds box 2m + q), then
  // one permutation puts the boxes in order.
  static void load_boxes(const float* p, Reg (&c)[4]) {
    const __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + 8);
    const __m256 r2 = _mm256_loadu_ps(p + 16), r3 = _mm256_loadu_ps(p + 24);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    c[0] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), order);
    c[1] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)), order);
    c[2] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), order);
    c[3] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)), order);
  }
  static void store_boxes(float* p, const Reg (&c)[4]) {
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // inverse of load's
    const __m256 x1 = _mm256_permutevar8x32_ps(c[0], order), y1 = _mm256_permutevar8x32_ps(c[1], order);
    const __m256 x2 = _mm256_permutevar8x32_ps(c[2], order), y2 = _mm256_permutevar8x32_ps(c[3], order);
    const __m256 u0 = _mm256_unpacklo_ps(x1, y1), u1 = _mm256_unpackhi_ps(x1, y1);
    const __m256 u2 = _mm256_unpacklo_ps(x2, y2), u3 = _mm256_unpackhi_ps(x2, y2);
    _mm256_storeu_ps(p, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0)));
    _mm256_storeu_ps(p + 8, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2)));
    _mm256_storeu_ps(p + 16, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0)));
    _mm256_storeu_ps(p + 24, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2)));
  }

  // A register's lanes widened to double: the low and the high half.
  using DoubleReg = __m256d;
  static DoubleReg double_zero() { return _mm256_setzero_pd(); }
  static DoubleReg double_add(DoubleReg a, DoubleReg b) { return _mm256_add_pd(a, b); }
  static DoubleReg low_as_double(Reg x) { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }
  static DoubleReg high_as_double(Reg x) { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }
  static void store_double(double* p, DoubleReg x) { _mm256_storeu_pd(p, x); }
};

}  // namespace vec
}  // namespace alwa
