// The interface between the CPU sigmoid_focal_loss kernel and its SIMD paths (torch-free), as
// box_loss_vec.h is for box_loss: a vector path computes elements [begin, end) of a float32
// call, W at a time, with the formulas of alwa/focal_loss.h instantiated on a SIMD type.
#pragma once

#include <stdint.h>

#include "alwa/focal_loss.h"

namespace alwa {
namespace cpu {

// Elements [begin, end) of a call (flat indices into the (rows, classes) logits): writes their
// outputs like focal_loss_element does and returns the sum of their weighted losses (in double,
// in a fixed order).
using FocalLossVecFn = double (*)(const FocalLossArgs<float, float>& args, int64_t begin,
                                  int64_t end, float grad_scale);

// The vector kernel of a call, or nullptr where this ISA does not vectorise it (or was not
// compiled in); the caller then uses the scalar focal_loss_element loop.
FocalLossVecFn focal_loss_vec_avx2(const FocalLossArgs<float, float>& args, bool grad,
                                   FocalGamma gamma);
FocalLossVecFn focal_loss_vec_avx512(const FocalLossArgs<float, float>& args, bool grad,
                                     FocalGamma gamma);

}  // namespace cpu
}  // namespace alwa
