// CUDA launcher of sigmoid_focal_loss (and its _with_grad form): validates and allocates
// through focal_loss_plan.h (shared with the CPU kernel), picks the grid, launches the kernels
// of focal_loss_kernels.cuh on the current stream. Nothing here reads device memory (labels are
// checked on the device), so no call synchronises with the host, and every temporary comes
// from the caching allocator, so the op can be captured in a CUDA graph.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>

#include "cuda/focal_loss_kernels.cuh"
#include "cuda/storage.h"
#include "focal_loss_plan.h"

namespace alwa {
namespace {

using cuda::kThreadsPerBlock;

void run_focal_loss_cuda(FocalLossPlan& plan) {
  const bool reduce = plan.reduction != Reduction::None;
  const int64_t num_elements = plan.num_rows * plan.num_classes;
  if (num_elements == 0) {
    if (reduce) plan.loss.zero_();
    return;
  }
  const uint32_t blocks = cuda::capped_blocks(num_elements, kThreadsPerBlock, resident_blocks());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "sigmoid_focal_loss_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = cuda::compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_focal_loss_args<scalar_t, T>(plan));
    const auto out = BlockReduction<storage_t, T>::template make<scalar_t>(reduce, blocks, plan.loss);
    dispatch_focal_gamma(plan.gamma, [&](auto gamma_two) {
      constexpr bool kGammaTwo = decltype(gamma_two)::value;
      if (plan.grad) {
        cuda::focal_loss_kernel<true, kGammaTwo><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, num_elements, out.block_sums, out.single_block_out);
      } else {
        cuda::focal_loss_kernel<false, kGammaTwo><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, num_elements, out.block_sums, out.single_block_out);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    out.finish(args, stream);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CUDA, m) {
  FocalLossOps<run_focal_loss_cuda, c10::cuda::CUDAGuard>::register_in(m);
}

}  // namespace alwa
