// CUDA launchers of box_loss (and its _with_grad and _backward forms), box_iou and
// box_iou_backward: validate and allocate through
// box_loss_plan.h (shared with the CPU kernels), pick the grid, launch the kernels of
// box_loss_kernels.cuh on the current stream. Nothing here reads device memory, so no call
// synchronises with the host, and every temporary comes from the caching allocator, so the
// ops can be captured in a CUDA graph.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "box_loss_plan.h"
#include "cuda/box_loss_kernels.cuh"
#include "cuda/storage.h"

namespace alwa {
namespace {

using cuda::kThreadsPerBlock;

// ----------------------------------------------------------------------------- box_loss

// Runs a planned box_loss or box_loss_backward call.
void run_box_loss_cuda(BoxLossPlan& plan) {
  const bool reduce = plan.loss.defined() && plan.reduction != Reduction::None;
  if (plan.num_boxes == 0) {
    if (reduce) plan.loss.zero_();
    return;  // (the gradients of an empty call have no elements)
  }
  const bool with_grad = plan.grad_pred || plan.grad_target;
  const uint32_t blocks = cuda::capped_blocks(plan.num_boxes, kThreadsPerBlock, resident_blocks());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.pred.scalar_type(), "box_loss_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = cuda::compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_box_loss_args<scalar_t, T>(plan));
    const cuda::BoxLoader load{cuda::boxes_vector_aligned(args.pred) &&
                               cuda::boxes_vector_aligned(args.target)};
    const auto out = BlockReduction<storage_t, T>::template make<scalar_t>(reduce, blocks, plan.loss);
    dispatch_loss_kind(plan.kind, [&](auto kind) {
      constexpr LossKind K = decltype(kind)::value;
      if (with_grad) {
        cuda::box_loss_kernel<K, true><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, load, out.block_sums, out.single_block_out);
      } else {
        cuda::box_loss_kernel<K, false><<<blocks, kThreadsPerBlock, 0, stream>>>(
            args, load, out.block_sums, out.single_block_out);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    out.finish(args, stream);
  });
}

using BoxLossCuda = BoxLossOps<run_box_loss_cuda, c10::cuda::CUDAGuard>;

// ----------------------------------------------------------------------------- box_iou

at::Tensor box_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2,
                        const std::string& kind, const std::string& box_format, double eps) {
  const c10::cuda::CUDAGuard device_guard(boxes1.device());
  const BoxIouPlan plan = plan_box_iou(boxes1, boxes2, kind, box_format, eps);
  if (plan.m == 0 || plan.n == 0) return plan.out;
  const dim3 grid(cuda::capped_blocks(plan.n, kThreadsPerBlock, cuda::kMaxGridDim),
                  cuda::capped_blocks(plan.m, cuda::kIouTileRows, cuda::kMaxGridDim));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.boxes1.scalar_type(), "box_iou_cuda", [&] {
    using T = cuda::compute_t<typename CudaStorage<scalar_t>::type>;
    dispatch_iou_kind(plan.kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      cuda::box_iou_kernel<K><<<grid, kThreadsPerBlock, 0, stream>>>(
          storage_ptr<scalar_t>(plan.boxes1), storage_ptr<scalar_t>(plan.boxes2), plan.m, plan.n, plan.format,
          static_cast<T>(eps), mutable_storage_ptr<scalar_t>(plan.out));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return plan.out;
}

// d out / d boxes1 (row sums) and d out / d boxes2 (column sums), each in a fixed order.
std::tuple<at::Tensor, at::Tensor> box_iou_backward_cuda(
    const at::Tensor& grad, const at::Tensor& boxes1, const at::Tensor& boxes2,
    const std::string& kind, const std::string& box_format, double eps, bool grad_boxes1,
    bool grad_boxes2) {
  const c10::cuda::CUDAGuard device_guard(boxes1.device());
  const LossKind loss_kind = check_box_iou_args(boxes1, boxes2, kind, box_format, eps);
  check_box_iou_grad(grad, boxes1, boxes2);
  const BoxFormat format = parse_iou_box_format(box_format);
  const int64_t m = boxes1.size(0), n = boxes2.size(0);
  at::Tensor grad1 = grad_boxes1 ? at::empty({m, 4}, boxes1.options()) : at::empty({0}, boxes1.options());
  at::Tensor grad2 = grad_boxes2 ? at::empty({n, 4}, boxes2.options()) : at::empty({0}, boxes2.options());
  if (m == 0 || n == 0) {
    if (grad_boxes1) grad1.zero_();
    if (grad_boxes2) grad2.zero_();
    return {grad1, grad2};
  }
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const at::Tensor g = grad.to(boxes1.scalar_type()).contiguous();
  const int64_t target_blocks = resident_blocks();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // Each chunk spans at least 4 staged tiles, so the partial sums stay small beside the pairs.
  const cuda::IouGradSplit split1 = cuda::split_iou_grad(
      m, n, cuda::kWarpsPerBlock, cuda::kIouTileCols, target_blocks, 4 * cuda::kIouTileCols);
  const cuda::IouGradSplit split2 = cuda::split_iou_grad(
      n, m, kThreadsPerBlock, cuda::kIouTileRows, target_blocks, 4 * cuda::kIouTileRows);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "box_iou_backward_cuda", [&] {
    using T = cuda::compute_t<typename CudaStorage<scalar_t>::type>;
    const auto acc_dtype = b1.options().dtype(c10::CppTypeToScalarType<T>::value);
    const auto* g_ptr = storage_ptr<scalar_t>(g);
    const auto* b1_ptr = storage_ptr<scalar_t>(b1);
    const auto* b2_ptr = storage_ptr<scalar_t>(b2);
    const T eps_t = static_cast<T>(eps);
    dispatch_iou_kind(loss_kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      // One chunk: the kernel writes the gradient; more: partial sums, added in chunk order.
      auto launch = [&](const cuda::IouGradSplit& split, int64_t num_boxes, const at::Tensor& out,
                        auto kernel) {
        auto* out_ptr = mutable_storage_ptr<scalar_t>(out);
        at::Tensor partial;
        T* partial_ptr = nullptr;
        if (split.num_chunks > 1) {
          partial = at::empty({split.num_chunks, num_boxes, 4}, acc_dtype);
          partial_ptr = partial.mutable_data_ptr<T>();
        }
        const dim3 grid(split.blocks_x, static_cast<uint32_t>(split.num_chunks));
        kernel<<<grid, kThreadsPerBlock, 0, stream>>>(g_ptr, b1_ptr, b2_ptr, m, n, format, eps_t,
                                                      split.chunk, partial_ptr,
                                                      partial_ptr == nullptr ? out_ptr : nullptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (partial_ptr != nullptr) {
          const uint32_t blocks = cuda::capped_blocks(num_boxes, kThreadsPerBlock, target_blocks);
          cuda::box_iou_grad_finish_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
              partial_ptr, split.num_chunks, num_boxes, format, out_ptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      };
      using storage_t = typename CudaStorage<scalar_t>::type;
      if (grad_boxes1) launch(split1, m, grad1, cuda::box_iou_grad_boxes1_kernel<K, storage_t, T>);
      if (grad_boxes2) launch(split2, n, grad2, cuda::box_iou_grad_boxes2_kernel<K, storage_t, T>);
    });
  });
  return {grad1, grad2};
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CUDA, m) {
  register_box_ops<BoxLossCuda>(m, &box_iou_cuda, &box_iou_backward_cuda);
}

}  // namespace alwa
