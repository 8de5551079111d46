// The AVX-512 (F, DQ, VL, BW) + FMA path of box_loss: this translation unit alone is compiled for that ISA (by the
// target pragma below, so the build needs no per-file flags); cpu_isa.cpp calls into it only
// on a CPU that has it. It holds no code that other translation units also instantiate.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

#include "alwa/macros.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif

#include "cpu/vec/simd_avx512.h"
#include "cpu/vec/atan2.h"

namespace alwa {
namespace simd_avx512 {
inline Vec atan2_(Vec y, Vec x) { return vec::atan2_poly(y, x); }
// Lane by lane with libm: only for code the header instantiates but that the vector path
// never runs (Alpha-IoU powers are refused in box_loss_vec_kernel).
inline Vec pow_(Vec x, Vec a) { return vec::lanewise(x, a, powf); }
}  // namespace simd_avx512
}  // namespace alwa

#include "cpu/vec/box_loss_vec_impl.h"

namespace alwa {
namespace cpu {

BoxLossVecFn box_loss_vec_avx512(LossKind kind, const BoxLossArgs<float, float>& args, bool grad) {
  return vec::box_loss_vec_kernel<simd_avx512::Vec, simd_avx512::DoubleSum>(kind, args, grad);
}

bool atan2_avx512(const float* y, const float* x, float* out, int64_t n) {
  vec::atan2_array<simd_avx512::Vec>(y, x, out, n);
  return true;
}

}  // namespace cpu
}  // namespace alwa

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // no x86 or no GCC-compatible compiler: the scalar path only

#include "cpu/box_loss_vec.h"

namespace alwa {
namespace cpu {
BoxLossVecFn box_loss_vec_avx512(LossKind, const BoxLossArgs<float, float>&, bool) { return nullptr; }
bool atan2_avx512(const float*, const float*, float*, int64_t) { return false; }
}  // namespace cpu
}  // namespace alwa

#endif
