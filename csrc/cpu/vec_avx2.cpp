// The AVX2 + FMA path of box_loss, sigmoid_focal_loss and distribution_focal_loss: this
// translation unit alone is compiled for that ISA; cpu_isa.cpp calls into it only on a CPU
// that has it.
#include "cpu/vec/target.h"

#define ALWA_VEC_UNIT_BOX_LOSS box_loss_vec_avx2
#define ALWA_VEC_UNIT_FOCAL_LOSS focal_loss_vec_avx2
#define ALWA_VEC_UNIT_DFL dfl_vec_avx2
#define ALWA_VEC_UNIT_DFL_INTEGRAL dfl_integral_vec_avx2
#if ALWA_VEC_X86
ALWA_VEC_TARGET_PUSH("avx2,fma")
#include "cpu/vec/isa_avx2.h"
#define ALWA_VEC_UNIT_ISA Avx2
#endif
#include "cpu/vec/vec_unit.h"
#if ALWA_VEC_X86
ALWA_VEC_TARGET_POP()
#endif
