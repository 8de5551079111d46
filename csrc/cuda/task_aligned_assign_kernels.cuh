// CUDA kernels of task_aligned_assign, torch-free (.ci/nvcc_check.sh instantiates them with
// nvcc alone); task_aligned_assign_launcher.h allocates the scratch and launches them in turn.
// The steps and every formula are alwa/task_aligned_assign.h's, the functions the CPU kernel
// calls:
//   tal_select_kernel   a block per (image, gt): steps 1-3, the gt's positives (at most topk)
//                       by rounds of a block-wide arg-best over its candidates, then the
//                       anchors of metric 0 in index order; counts each positive's anchor
//                       (integer atomics: the counts do not depend on their order)
//   tal_resolve_kernel  a thread per anchor: step 4, its gt and that pair's metric
//   tal_gt_kernel       a block per (image, gt): step 5 (topk2) and the gt's largest metric
//                       and overlap
//   tal_write_kernel    a thread per anchor: step 6, its targets
// No floating-point atomics and no order-dependent choice: the same inputs give the same
// outputs, bit for bit. No (image, gt, anchor) array: the scratch is (image, gt, topk) and
// (image, anchor). Every anchor's centre is tested against a gt's region (one subtraction and
// comparison each), the scores and overlaps read only for those inside.
#pragma once

#include "alwa/task_aligned_assign.h"
#include "common/cuda/launch_shape.h"

namespace alwa {
namespace cuda {

// One ranked (anchor, metric, overlap); anchor < 0: none.
template <class T>
struct Ranked {
  T metric;
  int64_t anchor;
  T overlap;
};

// The scratch the kernels share, from the caching allocator.
template <class T>
struct TalScratch {
  Ranked<T>* positives;  // (B, n, topk): each gt's positives after step 3
  int32_t* num_positives;  // (B, n)
  int32_t* count;        // (B, A): gts that took the anchor (zeroed before the launch)
  int32_t* taken_by;     // (B, A): the largest gt index that took it (-1 before the launch)
  int32_t* assigned;     // (B, A): the anchor's gt after steps 4 and 5, or -1
  T* metric;             // (B, A): the metric of (assigned gt, anchor)
  T* overlap;            // (B, A): its overlap
  Ranked<T>* kept;       // (B, n, topk2): step 5's, where topk2 != topk
  T* max_metric;         // (B, n)
  T* max_overlap;        // (B, n)
};

#if defined(__CUDACC__)

template <class T>
__device__ __forceinline__ bool better(const Ranked<T>& p, const Ranked<T>& q) {
  return p.anchor >= 0 && (q.anchor < 0 || ranks_above(p.metric, p.anchor, q.metric, q.anchor));
}

// The shared memory of a block's selection.
template <class T>
struct SelectShared {
  Ranked<T> best[kThreadsPerBlock];
  int32_t warp_counts[kWarpsPerBlock];
  int64_t cutoff;
  int32_t count;
};

// The best of the block's values (every thread gets it). Every thread of the block must call
// it; the barrier first lets a previous call's readers finish.
template <class T>
__device__ __forceinline__ Ranked<T> block_best(Ranked<T> mine, SelectShared<T>& shared) {
  __syncthreads();
  shared.best[threadIdx.x] = mine;
  __syncthreads();
  for (int stride = kThreadsPerBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride && better(shared.best[threadIdx.x + stride], shared.best[threadIdx.x])) {
      shared.best[threadIdx.x] = shared.best[threadIdx.x + stride];
    }
    __syncthreads();
  }
  return shared.best[0];
}

// Block-wide: the top k of one gt over all anchors, where `candidate(a, ranked)` says whether
// anchor a is one of its ranked anchors (and fills its metric and overlap) and `is_zero(a)`
// whether a has metric 0 (not ranked, or ranked at 0): those ranking above 0, then the anchors
// of metric 0 in index order, then the negative ones. Writes the ranked anchors taken to
// out[0..count) and returns count (in every thread). Every thread of the block must call it.
template <class T, class Candidate, class IsZero>
__device__ int32_t block_top_k(int64_t k, int64_t num_anchors, Candidate candidate, IsZero is_zero,
                               Ranked<T>* out, SelectShared<T>& shared) {
  const int64_t step = kThreadsPerBlock;
  // The best k ranked anchors, one a round: each round takes the best below the last.
  Ranked<T> bound{T(0), -1, T(0)};
  int32_t rounds = 0, above_zero = 0;
  for (; rounds < k; ++rounds) {
    Ranked<T> mine{T(0), -1, T(0)};
    for (int64_t a = threadIdx.x; a < num_anchors; a += step) {
      Ranked<T> r{T(0), a, T(0)};
      if (!candidate(a, r)) continue;
      if (bound.anchor >= 0 && !better(bound, r)) continue;
      if (better(r, mine)) mine = r;
    }
    const Ranked<T> chosen = block_best(mine, shared);
    if (chosen.anchor < 0) break;  // uniform: every thread has the same `chosen`
    if (threadIdx.x == 0) out[rounds] = chosen;
    if (ranks_above_zero(chosen.metric)) ++above_zero;
    bound = chosen;
  }
  const int64_t slots = k - above_zero;
  if (slots == 0) {
    __syncthreads();  // thread 0's writes to `out` visible to the block
    return above_zero;
  }
  // The index of the slots-th anchor of metric 0 (-1: fewer than slots of them).
  if (threadIdx.x == 0) shared.cutoff = -1;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  int64_t zeros_seen = 0;
  for (int64_t base = 0; base < num_anchors; base += step) {
    const int64_t a = base + threadIdx.x;
    const bool zero = a < num_anchors && is_zero(a);
    const unsigned votes = __ballot_sync(0xffffffffu, zero);
    __syncthreads();  // the cutoff's reset, or the previous chunk's warp counts read
    if (lane == 0) shared.warp_counts[warp] = __popc(votes);
    __syncthreads();
    int64_t before = zeros_seen + __popc(votes & ((1u << lane) - 1u)), chunk = 0;
    for (int w = 0; w < kWarpsPerBlock; ++w) {
      if (w < warp) before += shared.warp_counts[w];
      chunk += shared.warp_counts[w];
    }
    if (zero && before == slots - 1) shared.cutoff = a;
    zeros_seen += chunk;
    if (zeros_seen >= slots) break;  // uniform
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int64_t cutoff = shared.cutoff;
    int32_t count = above_zero;
    for (int32_t i = above_zero; i < rounds; ++i) {  // ranked at 0, in index order
      if (out[i].metric == T(0) && (cutoff < 0 || out[i].anchor <= cutoff)) out[count++] = out[i];
    }
    int64_t left = cutoff < 0 ? slots - zeros_seen : 0;  // every metric-0 anchor taken
    for (int32_t i = above_zero; i < rounds && left > 0; ++i) {
      if (out[i].metric < T(0)) {
        out[count++] = out[i];
        --left;
      }
    }
    shared.count = count;
  }
  __syncthreads();
  return shared.count;
}

// A gt's label is a class index: a device-side assert otherwise (reading it on the host would
// synchronise every call).
__device__ __forceinline__ void check_tal_label(int64_t label, int64_t num_classes) {
#if defined(__CUDA_ARCH__)
  if (!tal_label_valid(label, num_classes)) {
    __assert_fail("task_aligned_assign: gt_labels: class index outside [0, num_classes) for a box of mask_gt",
                  __FILE__, __LINE__, __func__);
  }
#endif
}

template <class score_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    tal_select_kernel(const TalArgs<score_t, T> args, const TalScratch<T> scratch) {
  __shared__ SelectShared<T> shared;
  const int64_t b = blockIdx.y, n = args.num_gt, A = args.num_anchors, k = args.params.topk;
  for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
    const int64_t g = b * n + j;
    if (!args.valid[g]) {
      if (threadIdx.x == 0) scratch.num_positives[g] = 0;
      continue;
    }
    check_tal_label(args.labels[g], args.num_classes);
    const CandidateRegion<T> region = candidate_region(gt_box(args, b, j), args.params.min_side);
    const T* anchors = args.anchors;
    Ranked<T>* out = scratch.positives + g * k;
    const int32_t count = block_top_k<T>(
        k, A,
        [&](int64_t a, Ranked<T>& r) {
          if (!inside(region, anchors[2 * a], anchors[2 * a + 1])) return false;
          const PairMetric<T> pm = gt_anchor_metric(args, b, j, a, region);
          r.metric = pm.metric;
          r.overlap = pm.overlap;
          return true;
        },
        [&](int64_t a) {
          return !inside(region, anchors[2 * a], anchors[2 * a + 1]) ||
                 gt_anchor_metric(args, b, j, a, region).metric == T(0);
        },
        out, shared);
    if (threadIdx.x == 0) scratch.num_positives[g] = count;
    for (int32_t i = threadIdx.x; i < count; i += kThreadsPerBlock) {
      const int64_t cell = b * A + out[i].anchor;
      atomicAdd(scratch.count + cell, 1);
      atomicMax(scratch.taken_by + cell, static_cast<int32_t>(j));
    }
    __syncthreads();  // `out` is read above before the next gt's rounds write `shared`
  }
}

template <class score_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    tal_resolve_kernel(const TalArgs<score_t, T> args, const TalScratch<T> scratch) {
  const int64_t cells = args.batch * args.num_anchors;
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  for (int64_t i = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); i < cells; i += step) {
    const int64_t b = i / args.num_anchors, a = i - b * args.num_anchors;
    const int32_t count = scratch.count[i];
    int64_t j = -1;
    PairMetric<T> pm{T(0), T(0)};
    if (count > 0) {
      j = count == 1 ? scratch.taken_by[i] : largest_overlap_gt(args, b, a);
      if (args.valid[b * args.num_gt + j]) {
        pm = gt_anchor_metric(args, b, j, a, candidate_region(gt_box(args, b, j), args.params.min_side));
      }
    }
    scratch.assigned[i] = static_cast<int32_t>(j);
    scratch.metric[i] = pm.metric;
    scratch.overlap[i] = pm.overlap;
  }
}

template <class score_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    tal_gt_kernel(const TalArgs<score_t, T> args, const TalScratch<T> scratch) {
  __shared__ SelectShared<T> shared;
  __shared__ T block_max[2][kThreadsPerBlock];
  __shared__ int32_t block_count[kThreadsPerBlock];
  const int64_t b = blockIdx.y, n = args.num_gt, A = args.num_anchors;
  const int32_t* assigned = scratch.assigned + b * A;
  for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
    const int64_t g = b * n + j;
    if (args.params.topk2 != args.params.topk) {  // step 5
      const int64_t k2 = args.params.topk2;
      Ranked<T>* kept = scratch.kept + g * k2;
      const T* metric = scratch.metric + b * A;
      const int32_t count = block_top_k<T>(
          k2, A,
          [&](int64_t a, Ranked<T>& r) {
            if (assigned[a] != j) return false;
            r.metric = metric[a];
            r.overlap = scratch.overlap[b * A + a];
            return true;
          },
          [&](int64_t a) { return assigned[a] != j || metric[a] == T(0); }, kept, shared);
      // Anchors of gt j not kept go to the background (another gt's anchors are left alone).
      for (int64_t a = threadIdx.x; a < A; a += kThreadsPerBlock) {
        if (assigned[a] != j) continue;
        bool keep = false;
        for (int32_t i = 0; i < count; ++i) keep = keep || kept[i].anchor == a;
        if (!keep) scratch.assigned[b * A + a] = -1;
      }
      __syncthreads();
    }
    // The largest metric and overlap of the gt's positives; the others count as 0 (torch's
    // amax over every anchor), unless every anchor is one.
    T m = T(0), o = T(0);
    int32_t mine = 0;
    bool first = true;
    for (int64_t a = threadIdx.x; a < A; a += kThreadsPerBlock) {
      if (assigned[a] != j) continue;
      const T am = scratch.metric[b * A + a], ao = scratch.overlap[b * A + a];
      m = first ? am : nan_max(m, am);
      o = first ? ao : nan_max(o, ao);
      first = false;
      ++mine;
    }
    block_max[0][threadIdx.x] = m;
    block_max[1][threadIdx.x] = o;
    block_count[threadIdx.x] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
      // In thread order: NaN wins whatever the order, and so does the largest number.
      int64_t total = 0;
      T max_m = T(0), max_o = T(0);
      bool any = false;
      for (int t = 0; t < kThreadsPerBlock; ++t) {
        if (block_count[t] == 0) continue;
        total += block_count[t];
        max_m = any ? nan_max(max_m, block_max[0][t]) : block_max[0][t];
        max_o = any ? nan_max(max_o, block_max[1][t]) : block_max[1][t];
        any = true;
      }
      if (total < A) {
        max_m = nan_max(max_m, T(0));
        max_o = nan_max(max_o, T(0));
      }
      scratch.max_metric[g] = max_m;
      scratch.max_overlap[g] = max_o;
    }
    __syncthreads();
  }
}

template <class score_t, class T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    tal_write_kernel(const TalArgs<score_t, T> args, const TalScratch<T> scratch) {
  const int64_t cells = args.batch * args.num_anchors;
  const int64_t step = grid_stride_step(gridDim.x, blockDim.x);
  for (int64_t i = grid_stride_begin(blockIdx.x, blockDim.x, threadIdx.x); i < cells; i += step) {
    const int64_t b = i / args.num_anchors, a = i - b * args.num_anchors;
    const int64_t j = args.num_gt > 0 ? scratch.assigned[i] : -1;
    T score = T(0);
    if (j >= 0) {
      const int64_t g = b * args.num_gt + j;
      score = target_score(scratch.metric[i], scratch.max_overlap[g], scratch.max_metric[g], args.params.eps,
                           args.num_gt > 1);
    }
    write_anchor_targets(args, b, a, j, score);
  }
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace alwa
