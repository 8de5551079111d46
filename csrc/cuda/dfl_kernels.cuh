// CUDA kernel of distribution_focal_loss, torch-free (.ci/nvcc_check.sh instantiates it with
// nvcc alone); dfl_launcher.h only allocates, picks the grid and launches. A thread per row,
// the row's math alwa/distribution_focal_loss.h's dfl_row, the function the CPU kernel calls.
// The reduction is common/cuda/block_reduce.cuh's: per-block sums in a fixed order, no
// floating-point atomics.
#pragma once

#include "alwa/distribution_focal_loss.h"
#include "common/cuda/block_reduce.cuh"

namespace alwa {
namespace cuda {

#if defined(__CUDACC__)

// A target outside [0, num_bins - 1] stops the kernel with a device-side assert (as torch's
// own index checks do on CUDA): reading it on the host would synchronise every call.
template <class T>
__device__ __forceinline__ void check_dfl_target(T target, int64_t num_bins) {
#if defined(__CUDA_ARCH__)
  if (!dfl_target_valid(target, num_bins)) {
    __assert_fail("distribution_focal_loss: target: distance outside [0, num_bins - 1]", __FILE__,
                  __LINE__, __func__);
  }
#endif
}

template <bool kGrad, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    dfl_kernel(const DflArgs<scalar_t, T> args, T* __restrict__ block_sums,
               scalar_t* __restrict__ reduced) {
  const T scale = reduction_scale(args);
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  T sum = T(0);
  for (int64_t row = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); row < args.num_rows;
       row += step) {
    const bool skipped = args.weight != nullptr && dfl_row_weight(args, row) == T(0);
    if (!skipped) check_dfl_target(args.target[row], args.num_bins);
    sum += dfl_row<kGrad>(args, row, scale);
  }
  if (block_sums == nullptr && reduced == nullptr) return;  // uniform over the grid
  write_block_sum(sum, scale, block_sums, reduced);
}

// distribution_expectation (kBackward: its backward): a thread per row.
template <bool kBackward, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    dfl_integral_kernel(const DflIntegralArgs<scalar_t, T> args) {
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  for (int64_t row = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); row < args.num_rows; row += step) {
    if constexpr (kBackward) {
      dfl_integral_backward_row(args, row);
    } else {
      dfl_integral_row(args, row);
    }
  }
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
