// The block reduction every reducing CUDA kernel ends with (box_loss, sigmoid_focal_loss):
// warp and block trees whose order of additions is fixed by the launch configuration alone,
// per-block partial sums, and the one-block kernel that adds them in order. No floating-point
// atomics, so the same inputs on the same device give bit-identical results. Torch-free.
#pragma once

#include "common/cuda/launch_shape.h"

namespace alwa {
namespace cuda {

#if defined(__CUDACC__)

// Sum over a warp by a shuffle tree: the order of the additions is fixed by the lane numbers.
// The result is in lane 0.
template <class T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Sum over a block of kThreadsPerBlock threads: a tree within each warp, the warps' sums
// staged in shared memory in warp order, then a tree over them. The result is in thread 0.
// Every thread of the block must call it (it holds a barrier).
template <class T>
__device__ __forceinline__ T block_sum(T value) {
  __shared__ T warp_sums[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = T(0);
  if (warp == 0) {
    if (lane < kWarpsPerBlock) value = warp_sums[lane];
    value = warp_sum(value);
  }
  return value;
}

// The end of a reducing pass (box_loss_kernel, focal_loss_kernel): the block's sum, written as
// the result, times `scale`, where the grid is one block (`reduced`), else as the block's
// partial sum (block_sums[blockIdx.x]) for reduce_block_sums_kernel. Every thread of the block
// must call it.
template <class scalar_t, class T>
__device__ __forceinline__ void write_block_sum(T sum, T scale, T* block_sums, scalar_t* reduced) {
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    if (reduced != nullptr) {
      *reduced = static_cast<scalar_t>(sum * scale);
    } else {
      block_sums[blockIdx.x] = sum;
    }
  }
}

// One block: adds the per-block sums of a reducing pass (each thread a fixed strided subset,
// then the block tree) and writes the reduced loss, times reduction_scale(args) (BoxLossArgs,
// FocalLossArgs).
template <class Args, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    reduce_block_sums_kernel(const Args args, const T* __restrict__ block_sums, int num_blocks,
                             scalar_t* __restrict__ reduced) {
  T sum = T(0);
  for (int b = threadIdx.x; b < num_blocks; b += blockDim.x) sum += block_sums[b];
  sum = block_sum(sum);
  if (threadIdx.x == 0) *reduced = static_cast<scalar_t>(sum * reduction_scale(args));
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
