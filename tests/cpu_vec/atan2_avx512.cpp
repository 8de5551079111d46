// The Avx512 atan2 unit of the test library (as csrc/cpu/vec_avx512.cpp switches its target).
#include <stdint.h>

#include "cpu/vec/target.h"

namespace alwa_vec_test {
bool atan2_avx512(const float* y, const float* x, float* out, int64_t n);
}

#if ALWA_VEC_X86
ALWA_VEC_TARGET_PUSH("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#include "cpu/vec/isa_avx512.h"
#define ATAN2_UNIT_ISA Avx512
#define ATAN2_UNIT_NAME atan2_avx512
#include "atan2_unit.h"
ALWA_VEC_TARGET_POP()
#else
bool alwa_vec_test::atan2_avx512(const float*, const float*, float*, int64_t) { return false; }
#endif
