// The body of each ISA's vector translation unit: the entry points of cpu/box_loss_vec.h,
// cpu/focal_loss_vec.h and cpu/dfl_vec.h for ALWA_VEC_UNIT_ISA (an ISA struct of isa_*.h),
// named with the unit's ALWA_VEC_UNIT_BOX_LOSS, ALWA_VEC_UNIT_FOCAL_LOSS, ALWA_VEC_UNIT_DFL and
// ALWA_VEC_UNIT_DFL_INTEGRAL;
// where the ISA is not defined (no x86 or no GCC-compatible compiler), stubs that report the
// path as absent.
// Included once, by that unit, inside its target switch.
#include "cpu/box_loss_vec.h"
#include "cpu/dfl_vec.h"
#include "cpu/focal_loss_vec.h"

#ifdef ALWA_VEC_UNIT_ISA
#include "cpu/vec/box_loss_vec_impl.h"
#include "cpu/vec/dfl_vec_impl.h"
#include "cpu/vec/focal_loss_vec_impl.h"

namespace alwa {
namespace cpu {

BoxLossVecFn ALWA_VEC_UNIT_BOX_LOSS(LossKind kind, const BoxLossArgs<float, float>& args, bool grad) {
  return vec::box_loss_vec_kernel<vec::ALWA_VEC_UNIT_ISA>(kind, args, grad);
}

FocalLossVecFn ALWA_VEC_UNIT_FOCAL_LOSS(const FocalLossArgs<float, float>& args, bool grad, FocalGamma gamma) {
  return vec::focal_loss_vec_kernel<vec::ALWA_VEC_UNIT_ISA>(args, grad, gamma);
}

DflVecFn ALWA_VEC_UNIT_DFL(const DflArgs<float, float>& args, bool grad) {
  return vec::dfl_vec_kernel<vec::ALWA_VEC_UNIT_ISA>(args, grad);
}

DflIntegralVecFn ALWA_VEC_UNIT_DFL_INTEGRAL(const DflIntegralArgs<float, float>& args) {
  return vec::dfl_integral_vec_kernel<vec::ALWA_VEC_UNIT_ISA>(args);
}

}  // namespace cpu
}  // namespace alwa

#else

namespace alwa {
namespace cpu {
BoxLossVecFn ALWA_VEC_UNIT_BOX_LOSS(LossKind, const BoxLossArgs<float, float>&, bool) { return nullptr; }
FocalLossVecFn ALWA_VEC_UNIT_FOCAL_LOSS(const FocalLossArgs<float, float>&, bool, FocalGamma) { return nullptr; }
DflVecFn ALWA_VEC_UNIT_DFL(const DflArgs<float, float>&, bool) { return nullptr; }
DflIntegralVecFn ALWA_VEC_UNIT_DFL_INTEGRAL(const DflIntegralArgs<float, float>&) { return nullptr; }
}  // namespace cpu
}  // namespace alwa

#endif
