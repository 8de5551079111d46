// The CUDA launcher of distribution_focal_loss (and its _with_grad form), a template over a
// Runtime (common/cuda/runtime.h): validates and allocates through dfl_plan.h (shared with the
// CPU kernel), picks the grid, launches dfl_kernels.cuh. Nothing here reads device memory
// (targets are checked on the device), so no call synchronises with the host, and every
// temporary comes from the caching allocator, so the op can be captured in a CUDA graph.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/cuda/launch.h"
#include "cuda/dfl_kernels.cuh"
#include "dfl_plan.h"

namespace alwa {
namespace cuda {

template <class Runtime>
void run_dfl(DflPlan& plan) {
  const bool reduce = plan.reduction != Reduction::None;
  if (plan.num_rows == 0) {
    if (reduce) plan.loss.zero_();
    return;
  }
  const uint32_t blocks = capped_blocks(plan.num_rows, kThreadsPerBlock, resident_blocks<Runtime>());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "distribution_focal_loss_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_dfl_args<scalar_t, T>(plan));
    const auto out = BlockReduction<storage_t, T>::template make<scalar_t>(reduce, blocks, plan.loss);
    auto* kernel = plan.grad ? dfl_kernel<true, storage_t, T> : dfl_kernel<false, storage_t, T>;
    Runtime::launch(kernel, dim3(blocks), dim3(kThreadsPerBlock), args, out.block_sums, out.single_block_out);
    out.template finish<Runtime>(args);
  });
}

template <class Runtime>
void run_dfl_integral(DflIntegralPlan& plan) {
  if (plan.num_rows == 0) return;
  const uint32_t blocks = capped_blocks(plan.num_rows, kThreadsPerBlock, resident_blocks<Runtime>());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "distribution_expectation_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_dfl_integral_args<scalar_t, T>(plan));
    auto* kernel = args.grad_in != nullptr ? dfl_integral_kernel<true, storage_t, T> : dfl_integral_kernel<false, storage_t, T>;
    Runtime::launch(kernel, dim3(blocks), dim3(kThreadsPerBlock), args);
  });
}

template <class Runtime>
void register_dfl_launchers(torch::Library& m) {
  DflOps<run_dfl<Runtime>, typename Runtime::DeviceGuard>::register_in(m);
  DflIntegralOps<run_dfl_integral<Runtime>, typename Runtime::DeviceGuard>::register_in(m);
}

}  // namespace cuda
}  // namespace alwa
