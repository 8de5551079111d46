// The CUDA kernels of box_iou_backward, torch-free: the two tiled gradient kernels (of boxes1,
// a warp per row; of boxes2, a thread per column), the host's split of their sums into chunks,
// and the kernel that adds the chunks in order (deterministic: no floating-point atomics).
#pragma once

#include "alwa/box_math.h"
#include "common/cuda/block_reduce.cuh"
#include "common/cuda/launch_shape.h"
#include "cuda/box_iou_kernel.cuh"

namespace alwa {
namespace cuda {

// How a box_iou_backward kernel splits its sums, decided on the host.
struct IouGradSplit {
  int64_t chunk;       // pairs per chunk (a multiple of the staged tile)
  int64_t num_chunks;  // gridDim.y
  uint32_t blocks_x;   // gridDim.x (grid-stride over the owners of the sums)
};

// `owners` boxes each sum over `length` pairs; a block covers `owners_per_block` owners and
// stages `tile` pairs at a time. Chunks are added until about target_blocks blocks are busy,
// keeping each chunk at least min_chunk long.
inline IouGradSplit split_iou_grad(int64_t owners, int64_t length, int64_t owners_per_block,
                                   int64_t tile, int64_t target_blocks, int64_t min_chunk) {
  IouGradSplit split;
  const int64_t owner_blocks = ceil_div(owners, owners_per_block);
  int64_t chunks = target_blocks / owner_blocks;
  const int64_t most = ceil_div(length, min_chunk);
  if (chunks > most) chunks = most;
  if (chunks > kMaxGridDim) chunks = kMaxGridDim;
  if (chunks < 1) chunks = 1;
  split.chunk = ceil_div(ceil_div(length, chunks), tile) * tile;
  split.num_chunks = ceil_div(length, split.chunk);
  split.blocks_x = capped_blocks(owners, owners_per_block, kMaxGridDim);
  return split;
}

#if defined(__CUDACC__)

// d sum(grad * out) / d boxes: box b's gradient is -sum over its pairs of grad * d loss / d box
// (out = 1 - loss). Each box's sum is split into `num_chunks` chunks of pairs when that gives
// the GPU more parallel work; each chunk is summed in a fixed order by one thread (grad of
// boxes2) or one warp (grad of boxes1) and written to partial[chunk][box][4], and
// box_iou_grad_finish_kernel adds the chunks in order. With one chunk the kernels write the
// gradient directly.

// The gradient of one box, accumulated w.r.t. its xyxy corners, as the caller's format.
template <class scalar_t, class T>
__device__ __forceinline__ void store_box_grad(T (&acc)[4], BoxFormat format,
                                               scalar_t* __restrict__ out) {
  if (format == BoxFormat::CXCYWH) xyxy_grad_to_cxcywh(acc);
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = saturating_cast<scalar_t>(acc[k]);
}

// Box `box`'s summed gradient: the gradient itself with one chunk (out), this chunk's partial
// sum otherwise.
template <class scalar_t, class T>
__device__ __forceinline__ void write_box_grad(T (&acc)[4], BoxFormat format, int64_t box,
                                               int64_t num_boxes, T* __restrict__ partial,
                                               scalar_t* __restrict__ out) {
  if (out != nullptr) {
    store_box_grad(acc, format, out + 4 * box);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) partial[(blockIdx.y * num_boxes + box) * 4 + k] = acc[k];
  }
}

// Gradient of boxes2: a thread owns a column j and sums over the rows of its chunk in order,
// reading grad[i, j] (contiguous over the warp) and the boxes1 staged in shared memory.
template <LossKind K, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    box_iou_grad_boxes2_kernel(const scalar_t* __restrict__ grad,
                               const scalar_t* __restrict__ boxes1,
                               const scalar_t* __restrict__ boxes2, int64_t m, int64_t n,
                               BoxFormat format, T eps, int64_t chunk, T* __restrict__ partial,
                               scalar_t* __restrict__ out) {
  __shared__ __align__(16) T rows[kIouTileRows][4];
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t row_end = row_begin + chunk < m ? row_begin + chunk : m;
  const int64_t col_step = grid_stride_step(gridDim.x, blockDim.x);
  for (int64_t col0 = grid_stride_begin(blockIdx.x, blockDim.x, 0); col0 < n; col0 += col_step) {
    const int64_t j = col0 + threadIdx.x;
    T b[4] = {T(0), T(0), T(0), T(0)};
    if (j < n) load_box_xyxy(boxes2, j, format, b);
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t row0 = row_begin; row0 < row_end; row0 += kIouTileRows) {
      const int64_t count = row_end - row0 < kIouTileRows ? row_end - row0 : kIouTileRows;
      __syncthreads();
      stage_boxes(boxes1, row0, count, format, rows);
      __syncthreads();
      if (j < n) {
        for (int r = 0; r < count; ++r) {
          T grad_a[4], grad_b[4];
          iou_loss<K, true>(rows[r], b, BoxFormat::XYXY, plain_iou_params(eps), grad_a, grad_b);
          const T g = static_cast<T>(grad[(row0 + r) * n + j]);
#pragma unroll
          for (int k = 0; k < 4; ++k) acc[k] -= g * grad_b[k];
        }
      }
    }
    if (j < n) write_box_grad(acc, format, j, n, partial, out);
  }
}

// Gradient of boxes1: a warp owns a row i; its lanes take the columns of each staged tile of
// boxes2 in a fixed interleave (lane, lane + 32, ...), each lane summing in order, and the
// warp's shuffle tree adds the lanes. Reads of grad[i, :] are contiguous over the warp.
template <LossKind K, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    box_iou_grad_boxes1_kernel(const scalar_t* __restrict__ grad,
                               const scalar_t* __restrict__ boxes1,
                               const scalar_t* __restrict__ boxes2, int64_t m, int64_t n,
                               BoxFormat format, T eps, int64_t chunk, T* __restrict__ partial,
                               scalar_t* __restrict__ out) {
  __shared__ __align__(16) T cols[kIouTileCols][4];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t col_begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t col_end = col_begin + chunk < n ? col_begin + chunk : n;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock; row0 < m;
       row0 += row_step) {
    const int64_t i = row0 + warp;
    T a[4] = {T(0), T(0), T(0), T(0)};
    if (i < m) load_box_xyxy(boxes1, i, format, a);
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t col0 = col_begin; col0 < col_end; col0 += kIouTileCols) {
      const int64_t count = col_end - col0 < kIouTileCols ? col_end - col0 : kIouTileCols;
      __syncthreads();
      stage_boxes(boxes2, col0, count, format, cols);
      __syncthreads();
      if (i < m) {
        for (int c = lane; c < count; c += kWarpSize) {
          T grad_a[4], grad_b[4];
          iou_loss<K, true>(a, cols[c], BoxFormat::XYXY, plain_iou_params(eps), grad_a, grad_b);
          const T g = static_cast<T>(grad[i * n + col0 + c]);
#pragma unroll
          for (int k = 0; k < 4; ++k) acc[k] -= g * grad_a[k];
        }
      }
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[k] = warp_sum(acc[k]);
    if (i < m && lane == 0) write_box_grad(acc, format, i, m, partial, out);
  }
}

// Adds the chunks of partial[num_chunks][num_boxes][4] in chunk order and writes the gradient.
template <class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    box_iou_grad_finish_kernel(const T* __restrict__ partial, int64_t num_chunks,
                               int64_t num_boxes, BoxFormat format, scalar_t* __restrict__ out) {
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  for (int64_t b = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); b < num_boxes;
       b += step) {
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t c = 0; c < num_chunks; ++c) {
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[k] += partial[(c * num_boxes + b) * 4 + k];
    }
    store_box_grad(acc, format, out + 4 * b);
  }
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
