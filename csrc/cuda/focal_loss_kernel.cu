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
    storage_t* reduced = nullptr;
    at::Tensor block_sums;
    T* block_sums_ptr = nullptr;
    if (reduce) {
      reduced = mutable_storage_ptr<scalar_t>(plan.loss);
      if (blocks > 1) {
        block_sums = at::empty({blocks}, plan.logits.options().dtype(c10::CppTypeToScalarType<T>::value));
        block_sums_ptr = block_sums.mutable_data_ptr<T>();
      }
    }
    storage_t* const single_block_out = blocks == 1 ? reduced : nullptr;
    dispatch_focal_gamma(plan.gamma, [&](auto gamma_two) {
      constexpr bool kGammaTwo = decltype(gamma_two)::value;
      if (plan.grad) {
        cuda::focal_loss_kernel<true, kGammaTwo><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, num_elements, block_sums_ptr, single_block_out);
      } else {
        cuda::focal_loss_kernel<false, kGammaTwo><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, num_elements, block_sums_ptr, single_block_out);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (block_sums_ptr != nullptr) {
      cuda::focal_loss_finish_kernel<<<1, kThreadsPerBlock, 0, stream>>>(
          args, block_sums_ptr, static_cast<int>(blocks), reduced);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CUDA, m) {
  FocalLossOps<run_focal_loss_cuda, c10::cuda::CUDAGuard>::register_in(m);
}

}  // namespace alwa
