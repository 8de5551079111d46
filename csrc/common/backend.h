// What turns a backend's kernel into operators, shared by every op and backend: the device
// guard a call needs (none on the CPU), how a backend allocates a large output (a gradient, the
// assigner's target scores), and torch's float16 as a storage type of the written-once math.
#pragma once

#include <ATen/ATen.h>

#include "common/storage.h"

namespace alwa {

template <>
struct StorageRange<c10::Half> {
  static constexpr bool kNarrow = true;
  static constexpr double kMax = 65504.0;
};

// The CPU's device guard: nothing to switch (the CUDA launchers use c10::cuda::CUDAGuard).
struct NoDeviceGuard {
  explicit NoDeviceGuard(const at::Device&) {}
};

// How a backend allocates a large output every element of which its kernel writes (an
// uninitialised contiguous tensor): at::empty by default; the CPU reuses the last one's memory
// once it is released (cpu/reused_buffer.h).
using OutputAllocator = at::Tensor (*)(at::IntArrayRef sizes, const at::TensorOptions& options);
inline at::Tensor fresh_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::empty(sizes, options);
}

}  // namespace alwa
