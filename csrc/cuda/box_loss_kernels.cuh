// CUDA kernels of box_loss, box_iou and box_iou_backward, torch-free: they compile with nvcc
// alone (.ci/nvcc_check.sh instantiates every one of them) or, over the CUDA shim of
// tests/cuda_host/, with the host compiler; box_loss_launcher.h only allocates, picks the grid
// and launches. The per-box math is alwa/box_math.h, the same functions the CPU kernels call.
//
// Kernels are templated on the storage type (float, double, __half, __nv_bfloat16) and the
// compute type (float for the half types, else the storage type). All reductions are
// deterministic: every sum is taken in an order fixed by the launch configuration alone, with
// no floating-point atomics, so the same inputs on the same device give bit-identical results.
//
// Host-side planning (grid sizes, chunking, alignment) is here too, as plain inline functions,
// so the index math can be tested on a machine without a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "alwa/box_math.h"

// box_math.h converts between storage and compute types with static_cast, which __half and
// __nv_bfloat16 support only with CUDA's conversion operators; torch's extension builder
// turns them off by default, and setup.py / CMakeLists.txt turn them back on (-U...).
#if defined(__CUDA_NO_HALF_CONVERSIONS__) || defined(__CUDA_NO_BFLOAT16_CONVERSIONS__)
#error "alwa CUDA kernels need __half/__nv_bfloat16 conversions: build with -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__"
#endif

namespace alwa {

// float16 gradient stores saturate at its largest finite value (StorageRange, box_loss_element.h).
template <>
struct StorageRange<__half> {
  static constexpr bool kNarrow = true;
  static constexpr double kMax = 65504.0;
};

namespace cuda {

// ----------------------------------------------------------------------------- launch shape

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;
// Occupancy asked of ptxas: at least 2 blocks per SM, i.e. at most 128 registers a thread.
// Without it ptxas aims at 64 for some kernels and spills. float64 gradients of the richer
// kinds (CIoU, EIoU, SIoU with their Alpha-IoU terms) need more than 128 registers of doubles,
// so float64 kernels ask for one block per SM (255 registers) instead of spilling.
template <class T>
constexpr int kMinBlocksPerSm = sizeof(T) == 8 ? 1 : 2;
// box_iou: rows of boxes1 staged in shared memory per step (forward, grad of boxes2).
constexpr int kIouTileRows = 64;
// box_iou_backward, grad of boxes1: one warp per row of boxes1, a block of kWarpsPerBlock rows
// sharing a tile of kThreadsPerBlock boxes2 in shared memory.
constexpr int kIouTileCols = kThreadsPerBlock;
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

// First index a thread handles in a grid-stride loop, and the loop's stride: 64-bit, so an
// index past 2^31 (or past 2^32) neither wraps nor turns negative.
ALWA_HD_INLINE int64_t grid_stride_begin(uint32_t block, uint32_t block_dim, uint32_t thread) {
  return static_cast<int64_t>(block) * static_cast<int64_t>(block_dim) + thread;
}
ALWA_HD_INLINE int64_t grid_stride_step(uint32_t grid_dim, uint32_t block_dim) {
  return static_cast<int64_t>(grid_dim) * static_cast<int64_t>(block_dim);
}

// ----------------------------------------------------------------------------- vector loads

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

#if defined(__CUDACC__)

// ----------------------------------------------------------------------------- reductions

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

// ----------------------------------------------------------------------------- box_loss

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

// ----------------------------------------------------------------------------- box_iou

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

// ----------------------------------------------------------------------------- box_iou_backward

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
