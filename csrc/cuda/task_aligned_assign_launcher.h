// The CUDA launcher of task_aligned_assign, a template over a Runtime (common/cuda/runtime.h):
// validates and allocates through task_aligned_assign_plan.h (shared with the CPU kernel),
// allocates the scratch from the caching allocator and launches the four kernels of
// task_aligned_assign_kernels.cuh in turn on the current stream. Nothing here reads device
// memory (labels are checked on the device): no host sync, and the op can be captured in a
// CUDA graph.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "common/cuda/launch.h"
#include "cuda/task_aligned_assign_kernels.cuh"
#include "task_aligned_assign_plan.h"

namespace alwa {
namespace cuda {

// The scratch of a call, in tensors that live until the launches are queued (the caching
// allocator keeps their memory for this stream until then).
struct TalScratchTensors {
  at::Tensor positives, num_positives, count, taken_by, assigned, metric, overlap, kept, max_metric, max_overlap;

  template <class T>
  TalScratch<T> pointers() const {
    TalScratch<T> s;
    s.positives = reinterpret_cast<Ranked<T>*>(positives.mutable_data_ptr<uint8_t>());
    s.num_positives = num_positives.mutable_data_ptr<int32_t>();
    s.count = count.mutable_data_ptr<int32_t>();
    s.taken_by = taken_by.mutable_data_ptr<int32_t>();
    s.assigned = assigned.mutable_data_ptr<int32_t>();
    s.metric = metric.mutable_data_ptr<T>();
    s.overlap = overlap.mutable_data_ptr<T>();
    s.kept = kept.defined() ? reinterpret_cast<Ranked<T>*>(kept.mutable_data_ptr<uint8_t>()) : nullptr;
    s.max_metric = max_metric.mutable_data_ptr<T>();
    s.max_overlap = max_overlap.mutable_data_ptr<T>();
    return s;
  }
};

template <class T>
TalScratchTensors make_tal_scratch(const TalPlan& plan) {
  const auto options = plan.pred.options();
  const auto bytes = options.dtype(at::kByte);
  const auto ints = options.dtype(at::kInt);
  const int64_t B = plan.batch, A = plan.num_anchors, n = plan.num_gt;
  TalScratchTensors t;
  t.positives = at::empty({std::max<int64_t>(B * n * plan.topk, 1) * static_cast<int64_t>(sizeof(Ranked<T>))}, bytes);
  t.num_positives = at::empty({std::max<int64_t>(B * n, 1)}, ints);
  t.count = at::zeros({B * A}, ints);
  t.taken_by = at::full({B * A}, -1, ints);
  t.assigned = at::empty({B * A}, ints);
  t.metric = at::empty({B * A}, options);
  t.overlap = at::empty({B * A}, options);
  if (plan.topk2 != plan.topk) {
    t.kept = at::empty({std::max<int64_t>(B * n * plan.topk2, 1) * static_cast<int64_t>(sizeof(Ranked<T>))}, bytes);
  }
  t.max_metric = at::empty({std::max<int64_t>(B * n, 1)}, options);
  t.max_overlap = at::empty({std::max<int64_t>(B * n, 1)}, options);
  return t;
}

template <class Runtime>
void run_task_aligned_assign(TalPlan& plan) {
  const int64_t cells = plan.batch * plan.num_anchors;
  if (cells == 0) return;
  dispatch_tal_types(plan, [&](auto score_tag, auto box_tag) {
    using score_t = typename CudaStorage<decltype(score_tag)>::type;
    using T = decltype(box_tag);
    const auto args = as_storage_args<score_t>(make_tal_args<decltype(score_tag), T>(plan));
    const uint32_t cell_blocks = capped_blocks(cells, kThreadsPerBlock, resident_blocks<Runtime>());
    if (plan.num_gt == 0) {  // every anchor background
      Runtime::launch(tal_write_kernel<score_t, T>, dim3(cell_blocks), dim3(kThreadsPerBlock), args, TalScratch<T>{});
      return;
    }
    const TalScratchTensors tensors = make_tal_scratch<T>(plan);
    const TalScratch<T> scratch = tensors.pointers<T>();
    // A block per (gt, image): gts along x (grid-stride beyond the cap), images along y.
    const dim3 gt_grid(static_cast<uint32_t>(std::min<int64_t>(plan.num_gt, kMaxGridDim)),
                       static_cast<uint32_t>(plan.batch));
    Runtime::launch(tal_select_kernel<score_t, T>, gt_grid, dim3(kThreadsPerBlock), args, scratch);
    Runtime::launch(tal_resolve_kernel<score_t, T>, dim3(cell_blocks), dim3(kThreadsPerBlock), args, scratch);
    Runtime::launch(tal_gt_kernel<score_t, T>, gt_grid, dim3(kThreadsPerBlock), args, scratch);
    Runtime::launch(tal_write_kernel<score_t, T>, dim3(cell_blocks), dim3(kThreadsPerBlock), args, scratch);
  });
}

template <class Runtime>
void register_task_aligned_assign_launcher(torch::Library& m) {
  TalOps<run_task_aligned_assign<Runtime>, typename Runtime::DeviceGuard>::register_in(m);
}

}  // namespace cuda
}  // namespace alwa
