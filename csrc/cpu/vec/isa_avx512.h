// The AVX-512 (F, DQ, VL, BW) intrinsics behind simd.h's Vec<Avx512>: 16 floats a register.
// Include only from a translation unit compiled for that ISA (vec_avx512.cpp).
#pragma once

#include <immintrin.h>
#include <stdint.h>

namespace alwa {
namespace vec {

struct Avx512 {
  using Reg = __m512;
  using MaskReg = __mmask16;
  static constexpr int kWidth = 16;

  static Reg set1(float s) { return _mm512_set1_ps(s); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm512_storeu_ps(p, x); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static MaskReg lt(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static MaskReg gt(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static MaskReg eq(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static MaskReg unordered(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
  static Reg blend(MaskReg m, Reg if_true, Reg if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  static Reg min(Reg x, Reg y) { return _mm512_min_ps(x, y); }
  static Reg max(Reg x, Reg y) { return _mm512_max_ps(x, y); }
  static Reg bits_and(Reg a, Reg b) { return _mm512_and_ps(a, b); }
  static Reg bits_andnot(Reg a, Reg b) { return _mm512_andnot_ps(a, b); }  // ~a & b
  static Reg bits_xor(Reg a, Reg b) { return _mm512_xor_ps(a, b); }
  static Reg bits_or(Reg a, Reg b) { return _mm512_or_ps(a, b); }
  static Reg bits_of(int bits) { return _mm512_castsi512_ps(_mm512_set1_epi32(bits)); }
  static MaskReg signbit(Reg a) {
    return _mm512_test_epi32_mask(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN));
  }
  // 1 / x to about 1 ulp: the 14-bit estimate and one Newton step (exp_log.h's reciprocal_).
  static Reg reciprocal(Reg x) {
    const Reg r = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(2.0f)));
  }
  // The nearest integer (ties to even); 2^n for an integral n in [-126, 127] (128 gives the
  // bits of inf); the unbiased exponent of a positive normal x (exp_log.h).
  static Reg round(Reg x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg pow2(Reg n) {
    const __m512i biased = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(biased, 23));
  }
  static Reg exponent(Reg x) {
    const __m512i biased = _mm512_srli_epi32(_mm512_castps_si512(x), 23);
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(biased, _mm512_set1_epi32(127)));
  }

  // The first `count` (< 16) floats at p, the other lanes `fill`; stores of the first `count`
  // lanes. Nothing past p + count is touched (the masked instructions do not fault there).
  static __mmask16 first_lanes(int count) { return static_cast<__mmask16>((1u << count) - 1u); }
  static Reg load_partial(const float* p, int count, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(count), p);
  }
  static void store_partial(float* p, Reg x, int count) { _mm512_mask_storeu_ps(p, first_lanes(count), x); }
  // The lanes' maximum and sum (each in a fixed order of pairs).
  static float reduce_max(Reg x) { return _mm512_reduce_max_ps(x); }
  static float reduce_add(Reg x) { return _mm512_reduce_add_ps(x); }

  // The largest integer <= x.
  static Reg floor(Reg x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // r[i] lane j <- r[j] lane i: unpacks within 128-bit lanes, then two rounds of 128-bit shuffles.
  static void transpose(Reg (&r)[16]) {
    Reg a[16], b[16], c[16];
    for (int i = 0; i < 8; ++i) {
      a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
      const __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
      b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
      b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
      b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
      b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int i = 0; i < 2; ++i) {
      for (int k = 0; k < 4; ++k) {
        c[8 * i + k] = _mm512_shuffle_f32x4(b[8 * i + k], b[8 * i + 4 + k], 0x88);
        c[8 * i + 4 + k] = _mm512_shuffle_f32x4(b[8 * i + k], b[8 * i + 4 + k], 0xdd);
      }
    }
    for (int k = 0; k < 8; ++k) {
      r[k] = _mm512_shuffle_f32x4(c[k], c[k + 8], 0x88);
      r[k + 8] = _mm512_shuffle_f32x4(c[k], c[k + 8], 0xdd);
    }
  }

  // Boxes i..i+15 of an (N, 4) array as four registers of coordinates (lane j = box i + j),
  // and back. Within each 128-bit lane a 4x4 transpose, then one permutation puts the boxes in
  // order (element 4q + m holds box 4m + q after the transpose; the permutation is its own
  // inverse).
  static __m512i box_order() {
    return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  }
  static void load_boxes(const float* p, Reg (&c)[4]) {
    const __m512 r0 = _mm512_loadu_ps(p), r1 = _mm512_loadu_ps(p + 16);
    const __m512 r2 = _mm512_loadu_ps(p + 32), r3 = _mm512_loadu_ps(p + 48);
    const __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
    const __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
    const __m512i order = box_order();
    c[0] = _mm512_permutexvar_ps(order, _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)));
    c[1] = _mm512_permutexvar_ps(order, _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)));
    c[2] = _mm512_permutexvar_ps(order, _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)));
    c[3] = _mm512_permutexvar_ps(order, _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  static void store_boxes(float* p, const Reg (&c)[4]) {
    const __m512i order = box_order();
    const __m512 x1 = _mm512_permutexvar_ps(order, c[0]), y1 = _mm512_permutexvar_ps(order, c[1]);
    const __m512 x2 = _mm512_permutexvar_ps(order, c[2]), y2 = _mm512_permutexvar_ps(order, c[3]);
    const __m512 u0 = _mm512_unpacklo_ps(x1, y1), u1 = _mm512_unpackhi_ps(x1, y1);
    const __m512 u2 = _mm512_unpacklo_ps(x2, y2), u3 = _mm512_unpackhi_ps(x2, y2);
    _mm512_storeu_ps(p, _mm512_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0)));
    _mm512_storeu_ps(p + 16, _mm512_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2)));
    _mm512_storeu_ps(p + 32, _mm512_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0)));
    _mm512_storeu_ps(p + 48, _mm512_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2)));
  }

  using DoubleReg = __m512d;
  static DoubleReg double_zero() { return _mm512_setzero_pd(); }
  static DoubleReg double_add(DoubleReg a, DoubleReg b) { return _mm512_add_pd(a, b); }
  static DoubleReg low_as_double(Reg x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
  static DoubleReg high_as_double(Reg x) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  }
  static void store_double(double* p, DoubleReg x) { _mm512_storeu_pd(p, x); }
};

}  // namespace vec
}  // namespace alwa
