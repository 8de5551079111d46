// The body of each ISA's vector translation unit: the entry points of cpu/box_loss_vec.h for
// ALWA_VEC_UNIT_ISA (an ISA struct of isa_*.h), named ALWA_VEC_UNIT_KERNEL and
// ALWA_VEC_UNIT_ATAN2; where the ISA is not defined (no x86 or no GCC-compatible compiler),
// stubs that report the path as absent. Included once, by that unit, inside its target switch.
#include "cpu/box_loss_vec.h"

#ifdef ALWA_VEC_UNIT_ISA
#include "cpu/vec/box_loss_vec_impl.h"

namespace alwa {
namespace cpu {

BoxLossVecFn ALWA_VEC_UNIT_KERNEL(LossKind kind, const BoxLossArgs<float, float>& args, bool grad) {
  return vec::box_loss_vec_kernel<vec::ALWA_VEC_UNIT_ISA>(kind, args, grad);
}

bool ALWA_VEC_UNIT_ATAN2(const float* y, const float* x, float* out, int64_t n) {
  vec::atan2_array<vec::Vec<vec::ALWA_VEC_UNIT_ISA>>(y, x, out, n);
  return true;
}

}  // namespace cpu
}  // namespace alwa

#else

namespace alwa {
namespace cpu {
BoxLossVecFn ALWA_VEC_UNIT_KERNEL(LossKind, const BoxLossArgs<float, float>&, bool) { return nullptr; }
bool ALWA_VEC_UNIT_ATAN2(const float*, const float*, float*, int64_t) { return false; }
}  // namespace cpu
}  // namespace alwa

#endif
