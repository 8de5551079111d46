// The Avx2 atan2 unit of the test library (as csrc/cpu/vec_avx2.cpp switches its target).
#include <stdint.h>

#include "cpu/vec/target.h"

namespace alwa_vec_test {
bool atan2_avx2(const float* y, const float* x, float* out, int64_t n);
}

#if ALWA_VEC_X86
ALWA_VEC_TARGET_PUSH("avx2,fma")
#include "cpu/vec/isa_avx2.h"
#define ATAN2_UNIT_ISA Avx2
#define ATAN2_UNIT_NAME atan2_avx2
#include "atan2_unit.h"
ALWA_VEC_TARGET_POP()
#else
bool alwa_vec_test::atan2_avx2(const float*, const float*, float*, int64_t) { return false; }
#endif
