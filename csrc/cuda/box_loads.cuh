// How the box kernels read a box: one vector load per box where the host found the inputs
// aligned, element loads otherwise. Torch-free.
#pragma once

#include "alwa/box_math.h"
#include "common/cuda/launch_shape.h"

namespace alwa {
namespace cuda {

// Bytes of one vector load of a box: the whole box for the half types (8 bytes), 16 bytes for
// float (the whole box) and double (half a box; two loads).
template <class scalar_t>
constexpr unsigned box_vector_bytes() {
  return 4 * sizeof(scalar_t) < 16 ? 4 * sizeof(scalar_t) : 16;
}

// Decided on the host: box i starts 4 * i elements after `boxes`, so all boxes share the base
// pointer's alignment and one check covers them all.
template <class scalar_t>
inline bool boxes_vector_aligned(const scalar_t* boxes) {
  return reinterpret_cast<uintptr_t>(boxes) % box_vector_bytes<scalar_t>() == 0;
}

#if defined(__CUDACC__)
__device__ __forceinline__ void load_box_vector(const float* src, float (&box)[4]) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(src));
  box[0] = v.x;
  box[1] = v.y;
  box[2] = v.z;
  box[3] = v.w;
}
__device__ __forceinline__ void load_box_vector(const double* src, double (&box)[4]) {
  const double2 lo = __ldg(reinterpret_cast<const double2*>(src));
  const double2 hi = __ldg(reinterpret_cast<const double2*>(src) + 1);
  box[0] = lo.x;
  box[1] = lo.y;
  box[2] = hi.x;
  box[3] = hi.y;
}
// The half types: the whole box in 8 bytes, two coordinates a 32-bit word (the first in the
// low half), each converted to float. The words are split with shifts: reading them as
// __half2 through a pointer cast would break the aliasing rules.
template <class S, class Raw>
__device__ __forceinline__ void load_box_halves(const S* src, float (&box)[4]) {
  const uint2 raw = __ldg(reinterpret_cast<const uint2*>(src));
  const uint32_t words[2] = {raw.x, raw.y};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    Raw bits;
    bits.x = static_cast<unsigned short>(words[k / 2] >> (16 * (k % 2)));
    box[k] = static_cast<float>(S(bits));
  }
}
__device__ __forceinline__ void load_box_vector(const __half* src, float (&box)[4]) {
  load_box_halves<__half, __half_raw>(src, box);
}
__device__ __forceinline__ void load_box_vector(const __nv_bfloat16* src, float (&box)[4]) {
  load_box_halves<__nv_bfloat16, __nv_bfloat16_raw>(src, box);
}
#endif

// The loader box_loss_element is given: one vector load per box where `vector` (decided on the
// host with boxes_vector_aligned) says the boxes are aligned, element loads otherwise. The
// flag is the same for every thread, so the branch never diverges.
struct BoxLoader {
  bool vector;

  template <class T, class scalar_t>
  ALWA_HD_INLINE void operator()(const scalar_t* src, T (&box)[4]) const {
#if defined(__CUDA_ARCH__)
    if (vector) {
      load_box_vector(src, box);
      return;
    }
#endif
    load_box(src, box);
  }
};

}  // namespace cuda
}  // namespace alwa
