// The CUDA kernel of box_loss (all three forms), torch-free: it compiles with nvcc alone
// (.ci/nvcc_check.sh instantiates it for every kind and dtype) or, over the CUDA shim of
// tests/cuda_host/, with the host compiler; box_loss_launcher.h only allocates, picks the grid
// and launches. The per-box math is alwa/box_math.h, the same functions the CPU kernels call.
//
// Templated on the storage type (float, double, __half, __nv_bfloat16) and the compute type
// (float for the half types, else the storage type). The reduction is common/cuda/
// block_reduce.cuh's: deterministic, no floating-point atomics.
#pragma once

#include "alwa/box_math.h"
#include "common/cuda/block_reduce.cuh"
#include "cuda/box_loads.cuh"

namespace alwa {
namespace cuda {

#if defined(__CUDACC__)

// One pass over the boxes: per-element losses (reduction "none") and gradients are written by
// box_loss_element; for "sum"/"mean" each block also sums its boxes' losses in a fixed order.
// The blocks' sums go through write_block_sum (the reduced loss, or partial sums that
// reduce_block_sums_kernel adds up); both pointers are null for reduction "none".
template <LossKind K, bool kGrad, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    box_loss_kernel(const BoxLossArgs<scalar_t, T> args, const BoxLoader load,
                    T* __restrict__ block_sums, scalar_t* __restrict__ reduced) {
  // The factor on every gradient (reads avg_factor and a reduced upstream where they live).
  const T scale = gradient_scale(args);
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  T sum = T(0);
  for (int64_t i = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); i < args.num_boxes;
       i += step) {
    sum += box_loss_element<K, kGrad, scalar_t, T, BoxLoader>(args, i, scale, load);
  }
  if (block_sums == nullptr && reduced == nullptr) return;  // uniform over the grid
  // (`reduced` only in the forward, where the upstream gradient is absent and scale is the
  // reduction's)
  write_block_sum(sum, scale, block_sums, reduced);
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
