// The CUDA kernel of box_iou (the (M, N) similarity matrix), torch-free, and the staging of
// boxes in shared memory that box_iou_backward's kernels share. The per-pair math is
// alwa/box_math.h's iou_value, the CPU kernel's.
#pragma once

#include "alwa/box_math.h"
#include "common/cuda/launch_shape.h"

namespace alwa {
namespace cuda {

// box_iou: rows of boxes1 staged in shared memory per step (forward, grad of boxes2).
constexpr int kIouTileRows = 64;
// box_iou_backward, grad of boxes1: one warp per row of boxes1, a block of kWarpsPerBlock rows
// sharing a tile of kThreadsPerBlock boxes2 in shared memory.
constexpr int kIouTileCols = kThreadsPerBlock;

#if defined(__CUDACC__)

// Box j of `boxes` in the compute type, as xyxy (the conversion box_math.h's iou_loss would
// make for every pair is made once per box; it is the same function, so values are identical).
template <class scalar_t, class T>
__device__ __forceinline__ void load_box_xyxy(const scalar_t* boxes, int64_t j, BoxFormat format,
                                              T (&box)[4]) {
  T raw[4];
  load_box(boxes + 4 * j, raw);
  if (format == BoxFormat::CXCYWH) {
    cxcywh_to_xyxy(raw, box);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) box[k] = raw[k];
  }
}

// Stages boxes [first, first + count) of `boxes` (count <= blockDim.x) into tile as xyxy.
template <class scalar_t, class T, int kTile>
__device__ __forceinline__ void stage_boxes(const scalar_t* boxes, int64_t first, int64_t count,
                                            BoxFormat format, T (&tile)[kTile][4]) {
  if (threadIdx.x < count) load_box_xyxy(boxes, first + threadIdx.x, format, tile[threadIdx.x]);
}

// out[i, j] = similarity K of boxes1[i] and boxes2[j], an (m, n) row-major matrix.
// A thread owns a column j (its box2 in registers) so that a warp's stores are contiguous;
// the rows are the shared operand: a block stages kIouTileRows boxes1 at a time in shared
// memory, and every thread reads each of them (a broadcast, no bank conflicts).
// Grid: x over tiles of kThreadsPerBlock columns, y over tiles of rows, both grid-stride.
template <LossKind K, class scalar_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm<T>)
    box_iou_kernel(const scalar_t* __restrict__ boxes1, const scalar_t* __restrict__ boxes2,
                   int64_t m, int64_t n, BoxFormat format, T eps, scalar_t* __restrict__ out) {
  __shared__ __align__(16) T rows[kIouTileRows][4];
  const int64_t col_step = grid_stride_step(gridDim.x, blockDim.x);
  const int64_t row_step = static_cast<int64_t>(gridDim.y) * kIouTileRows;
  for (int64_t col0 = grid_stride_begin(blockIdx.x, blockDim.x, 0); col0 < n; col0 += col_step) {
    const int64_t j = col0 + threadIdx.x;
    T b[4] = {T(0), T(0), T(0), T(0)};
    if (j < n) load_box_xyxy(boxes2, j, format, b);
    for (int64_t row0 = static_cast<int64_t>(blockIdx.y) * kIouTileRows; row0 < m;
         row0 += row_step) {
      const int64_t count = m - row0 < kIouTileRows ? m - row0 : kIouTileRows;
      __syncthreads();  // the previous tile has been read
      stage_boxes(boxes1, row0, count, format, rows);
      __syncthreads();
      if (j < n) {
        for (int r = 0; r < count; ++r) {
          out[(row0 + r) * n + j] =
              static_cast<scalar_t>(iou_value<K>(rows[r], b, BoxFormat::XYXY, eps));
        }
      }
    }
  }
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
