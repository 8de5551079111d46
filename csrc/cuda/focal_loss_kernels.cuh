// CUDA kernels of sigmoid_focal_loss, torch-free (.ci/nvcc_check.sh instantiates them with
// nvcc alone); focal_loss_launcher.h only allocates, picks the grid and launches. The
// per-element math is alwa/focal_loss.h, the functions the CPU kernels call.
// The reduction is common/cuda/block_reduce.cuh's: per-block sums in a fixed order, no
// floating-point atomics.
#pragma once

#include "alwa/focal_loss.h"
#include "common/cuda/block_reduce.cuh"

namespace alwa {
namespace cuda {

#if defined(__CUDACC__)

// A label outside [0, num_classes] stops the kernel with a device-side assert (as torch's own
// index checks do on CUDA): reading it on the host would synchronise every call.
__device__ __forceinline__ void check_focal_label(int64_t label, int64_t num_classes) {
#if defined(__CUDA_ARCH__)
  if (!focal_label_valid(label, num_classes)) {
    __assert_fail("sigmoid_focal_loss: targets: class index outside [0, num_classes]", __FILE__,
                  __LINE__, __func__);
  }
#endif
}

// One pass over the elements: outputs written by focal_loss_element; for "sum"/"mean" the
// block's losses summed (write_block_sum; reduce_block_sums_kernel finishes a larger grid).
template <bool kGrad, FocalGamma kGamma, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    focal_loss_kernel(const FocalLossArgs<scalar_t, T> args, int64_t num_elements,
                      T* __restrict__ block_sums, scalar_t* __restrict__ reduced) {
  const T scale = reduction_scale(args);
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  T sum = T(0);
  for (int64_t i = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); i < num_elements;
       i += step) {
    const int64_t row = i / args.num_classes, col = i - row * args.num_classes;
    if (args.labels != nullptr) check_focal_label(args.labels[row], args.num_classes);
    sum += focal_loss_element<kGrad, kGamma>(args, row, col, scale);
  }
  if (block_sums == nullptr && reduced == nullptr) return;  // uniform over the grid
  write_block_sum(sum, scale, block_sums, reduced);
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
