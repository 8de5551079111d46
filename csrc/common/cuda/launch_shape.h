// The launch shape every CUDA kernel shares (block size, occupancy, grid caps, grid-stride
// indices) and the half types as storage and compute types. Torch-free: compiles with nvcc alone
// or, over the CUDA shim of tests/cuda_host/, with the host compiler. Host-side planning (grid
// sizes) is plain inline functions, so the index math can be tested without a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "common/macros.h"
#include "common/storage.h"

// The kernels convert between storage and compute types with static_cast, which __half and
// __nv_bfloat16 support only with CUDA's conversion operators; torch's extension builder
// turns them off by default, and setup.py / CMakeLists.txt turn them back on (-U...).
#if defined(__CUDA_NO_HALF_CONVERSIONS__) || defined(__CUDA_NO_BFLOAT16_CONVERSIONS__)
#error "alwa CUDA kernels need __half/__nv_bfloat16 conversions: build with -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__"
#endif

namespace alwa {

// float16 stores saturate at its largest finite value (common/storage.h).
template <>
struct StorageRange<__half> {
  static constexpr bool kNarrow = true;
  static constexpr double kMax = 65504.0;
};

namespace cuda {

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;
// Occupancy asked of ptxas: at least 2 blocks per SM, i.e. at most 128 registers a thread.
// Without it ptxas aims at 64 for some kernels and spills. float64 gradients of the richer
// kinds (CIoU, EIoU, SIoU with their Alpha-IoU terms) need more than 128 registers of doubles,
// so float64 kernels ask for one block per SM (255 registers) instead of spilling.
template <class T>
constexpr int kMinBlocksPerSm = sizeof(T) == 8 ? 1 : 2;
// The hardware limit on gridDim.y (and a sane cap on gridDim.x; every loop is grid-stride).
constexpr int64_t kMaxGridDim = 65535;

template <class scalar_t>
struct ComputeType {
  using type = scalar_t;
};
template <>
struct ComputeType<__half> {
  using type = float;
};
template <>
struct ComputeType<__nv_bfloat16> {
  using type = float;
};
template <class scalar_t>
using compute_t = typename ComputeType<scalar_t>::type;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for `items` work items of `per_block` each, at least 1, at most max_blocks (the loops
// are grid-stride, so a capped grid still covers every item).
inline uint32_t capped_blocks(int64_t items, int64_t per_block, int64_t max_blocks) {
  int64_t blocks = ceil_div(items, per_block);
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<uint32_t>(blocks);
}

// First index a thread handles in a grid-stride loop, and the loop's stride: 64-bit, so an
// index past 2^31 (or past 2^32) neither wraps nor turns negative.
ALWA_HD_INLINE int64_t grid_stride_begin(uint32_t block, uint32_t block_dim, uint32_t thread) {
  return static_cast<int64_t>(block) * static_cast<int64_t>(block_dim) + thread;
}
ALWA_HD_INLINE int64_t grid_stride_step(uint32_t grid_dim, uint32_t block_dim) {
  return static_cast<int64_t>(grid_dim) * static_cast<int64_t>(block_dim);
}

}  // namespace cuda
}  // namespace alwa
