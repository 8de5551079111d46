// How the kernels store a value computed in float (or double) into the tensor's dtype. Torch-free:
// compiles with nvcc or a host compiler alone.
#pragma once

#include "common/macros.h"

namespace alwa {

// Storage types whose range is narrower than the compute type's (float16: +-65504) declare it
// by specialising this trait (torch's c10::Half in common/checks.h, CUDA's __half in
// common/cuda/launch_shape.h). Per-element losses and gradients are then saturated when
// stored, so a finite value that exceeds the storage range (a steep GIoU gradient of a nearly
// flat box, say) stays finite. A reduced loss is never saturated: a sum beyond the range is
// inf, as torch's is.
template <class scalar_t>
struct StorageRange {
  static constexpr bool kNarrow = false;
  static constexpr double kMax = 0.0;
};

template <class scalar_t, class T>
ALWA_HD_INLINE scalar_t saturating_cast(T value) {
  if constexpr (StorageRange<scalar_t>::kNarrow) {
    const T limit = static_cast<T>(StorageRange<scalar_t>::kMax);
    // (comparisons, not fmin/fmax: NaN stays NaN, and SIMD types overload them alike)
    value = value < -limit ? -limit : value;
    value = value > limit ? limit : value;
  }
  return static_cast<scalar_t>(value);
}

}  // namespace alwa
