// The CUDA launcher of sigmoid_focal_loss (and its _with_grad form), a template over a Runtime
// (cuda/runtime.h): validates and allocates through focal_loss_plan.h (shared with the CPU
// kernel), picks the grid, launches the kernels of focal_loss_kernels.cuh. Nothing here reads
// device memory (labels are checked on the device), so no call synchronises with the host, and
// every temporary comes from the caching allocator, so the op can be captured in a CUDA graph.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/cuda/launch.h"
#include "cuda/focal_loss_kernels.cuh"
#include "focal_loss_plan.h"

namespace alwa {
namespace cuda {

template <class Runtime>
void run_focal_loss(FocalLossPlan& plan) {
  const bool reduce = plan.reduction != Reduction::None;
  const int64_t num_elements = plan.num_rows * plan.num_classes;
  if (num_elements == 0) {
    if (reduce) plan.loss.zero_();
    return;
  }
  const uint32_t blocks = capped_blocks(num_elements, kThreadsPerBlock, resident_blocks<Runtime>());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "sigmoid_focal_loss_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_focal_loss_args<scalar_t, T>(plan));
    const auto out = BlockReduction<storage_t, T>::template make<scalar_t>(reduce, blocks, plan.loss);
    dispatch_focal_gamma(plan.gamma, [&](auto gamma_form) {
      constexpr FocalGamma kGamma = decltype(gamma_form)::value;
      auto* kernel = plan.grad ? focal_loss_kernel<true, kGamma, storage_t, T>
                               : focal_loss_kernel<false, kGamma, storage_t, T>;
      Runtime::launch(kernel, dim3(blocks), dim3(kThreadsPerBlock), args, num_elements,
                      out.block_sums, out.single_block_out);
    });
    out.template finish<Runtime>(args);
  });
}

template <class Runtime>
void register_focal_loss_launchers(torch::Library& m) {
  FocalLossOps<run_focal_loss<Runtime>, typename Runtime::DeviceGuard>::register_in(m);
}

}  // namespace cuda
}  // namespace alwa
