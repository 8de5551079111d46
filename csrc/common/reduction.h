// The one reduction rule of every loss op (box_loss, sigmoid_focal_loss), for the CPU and CUDA
// kernels and the autograd alike. Torch-free: compiles with nvcc or a host compiler alone.
//
//   "none"  the element losses, weighted
//   "sum"   their sum
//   "mean"  their sum / element count, or / (avg_factor + kAvgFactorEps) where avg_factor is
//           given (mmdet's weight_reduce_loss); avg_factor is a tensor read where the kernel
//           runs, so a CUDA call never synchronises with the host
//
// The table below yields the enum and the names; alwa_ext.kinds reads the names and the
// epsilon from the extension (alwa_ext._C), so Python spells neither again.
#pragma once

#include "common/macros.h"

namespace alwa {

// X(enumerator, name)
#define ALWA_REDUCTIONS(X) \
  X(None, "none")          \
  X(Mean, "mean")          \
  X(Sum, "sum")

enum class Reduction : int {
#define ALWA_ENUMERATOR(e, name) e,
  ALWA_REDUCTIONS(ALWA_ENUMERATOR)
#undef ALWA_ENUMERATOR
};

constexpr const char* kReductionNames[] = {
#define ALWA_NAME(e, name) name,
    ALWA_REDUCTIONS(ALWA_NAME)
#undef ALWA_NAME
};

// float32's eps, which mmdet adds to avg_factor.
constexpr double kAvgFactorEps = 1.1920928955078125e-07;

// d reduced loss / d element loss: `count_scale` (1 for "none" and "sum", 1 / count for "mean"
// without avg_factor) or, with avg_factor, count_scale / (*avg_factor + kAvgFactorEps).
template <class T>
ALWA_HD_INLINE T reduction_scale(T count_scale, const double* avg_factor) {
  return avg_factor != nullptr ? count_scale / static_cast<T>(*avg_factor + kAvgFactorEps)
                               : count_scale;
}

// The reduced loss of a sum of weighted element losses taken in double (the CPU kernels).
inline double reduce_total(double total, double count_scale, const double* avg_factor) {
  return total * reduction_scale(count_scale, avg_factor);
}

}  // namespace alwa
