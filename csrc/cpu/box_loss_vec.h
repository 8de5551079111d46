// The interface between the CPU box_loss kernel and its SIMD paths (torch-free).
//
// A vector path computes a range of boxes of a float32 box_loss call, W boxes at a time
// (W = 8 with AVX2, 16 with AVX-512), with the formulas of alwa/box_math.h instantiated on a
// SIMD type. Each ISA lives in its own translation unit, compiled for that ISA only
// (vec_avx2.cpp, vec_avx512.cpp); cpu_isa.cpp picks one at run time.
#pragma once

#include <stdint.h>

#include "alwa/box_math.h"

namespace alwa {
namespace cpu {

// Boxes [begin, end) of a call: writes their outputs like box_loss_element does and returns
// the sum of their weighted element losses (in double, in a fixed order).
using BoxLossVecFn = double (*)(const BoxLossArgs<float, float>& args, int64_t begin,
                                int64_t end, float grad_scale);

// The vector kernel of a call (its kind, its arguments' format and options, grad or not), or
// nullptr where this ISA does not vectorise it (or was not compiled in); the caller then uses
// the scalar box_loss_element loop.
BoxLossVecFn box_loss_vec_avx2(LossKind kind, const BoxLossArgs<float, float>& args, bool grad);
BoxLossVecFn box_loss_vec_avx512(LossKind kind, const BoxLossArgs<float, float>& args, bool grad);

}  // namespace cpu
}  // namespace alwa
