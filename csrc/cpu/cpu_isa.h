// Which SIMD path the CPU kernels take: chosen at run time for the machine they run on (the
// build assumes nothing about the CPU), overridable by ALWA_CPU_ISA=scalar|avx2|avx512 (read
// at the first call) or torch.ops.alwa.set_cpu_isa (tests use both to exercise every path).
#pragma once

#include <string>
#include <vector>

#include "alwa/box_math.h"
#include "cpu/box_loss_vec.h"
#include "cpu/dfl_vec.h"
#include "cpu/focal_loss_vec.h"

namespace alwa {
namespace cpu {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// Whether this build has the path and this CPU (and OS) can run it.
bool isa_available(Isa isa);
// The path in use: ALWA_CPU_ISA if set, else the widest available.
Isa active_isa();

// The vector kernel of the active path for a float32 call, or nullptr for the scalar loop.
BoxLossVecFn box_loss_vec_fn(LossKind kind, const BoxLossArgs<float, float>& args, bool grad);
// The same for sigmoid_focal_loss.
FocalLossVecFn focal_loss_vec_fn(const FocalLossArgs<float, float>& args, bool grad, FocalGamma gamma);
// The same for distribution_focal_loss.
DflVecFn dfl_vec_fn(const DflArgs<float, float>& args, bool grad);
DflIntegralVecFn dfl_integral_vec_fn(const DflIntegralArgs<float, float>& args);

}  // namespace cpu
}  // namespace alwa
