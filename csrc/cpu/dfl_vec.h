// The interface between the CPU distribution_focal_loss kernel and its SIMD paths
// (torch-free), as box_loss_vec.h is for box_loss: a vector path computes rows [begin, end) of
// a float32 call, the bins of a row across the lanes, with the formulas of
// alwa/distribution_focal_loss.h.
#pragma once

#include <stdint.h>

#include "alwa/distribution_focal_loss.h"

namespace alwa {
namespace cpu {

// Rows [begin, end) of a call: writes their outputs like dfl_row does and returns the sum of
// their weighted losses (in double, in row order).
using DflVecFn = double (*)(const DflArgs<float, float>& args, int64_t begin, int64_t end,
                            float grad_scale);

// The vector kernel of a call, or nullptr where this ISA does not vectorise it (or was not
// compiled in); the caller then uses the scalar dfl_row loop.
DflVecFn dfl_vec_avx2(const DflArgs<float, float>& args, bool grad);
DflVecFn dfl_vec_avx512(const DflArgs<float, float>& args, bool grad);

// Rows [begin, end) of a float32 distribution_expectation (forward, or backward where
// args.grad_in is set), as dfl_integral_row / dfl_integral_backward_row compute them.
using DflIntegralVecFn = void (*)(const DflIntegralArgs<float, float>& args, int64_t begin, int64_t end);
DflIntegralVecFn dfl_integral_vec_avx2(const DflIntegralArgs<float, float>& args);
DflIntegralVecFn dfl_integral_vec_avx512(const DflIntegralArgs<float, float>& args);

}  // namespace cpu
}  // namespace alwa
