// The CUDA launchers of box_loss (and its _with_grad and _backward forms), box_iou and
// box_iou_backward, as templates over a Runtime (cuda/runtime.h): validate and allocate
// through box_loss_plan.h (shared with the CPU kernels), pick the grid, launch the kernels of
// box_loss_kernels.cuh. Nothing here reads device memory, so no call synchronises with the
// host, and every temporary comes from the caching allocator, so the ops can be captured in a
// CUDA graph. box_loss_kernel.cu registers them over the CUDA runtime; the test build of
// tests/cuda_host/ runs them on the host.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "box_loss_plan.h"
#include "common/cuda/launch.h"
#include "cuda/box_iou_backward_kernels.cuh"
#include "cuda/box_iou_kernel.cuh"
#include "cuda/box_loss_kernels.cuh"

namespace alwa {
namespace cuda {

// Runs a planned box_loss or box_loss_backward call.
template <class Runtime>
void run_box_loss(BoxLossPlan& plan) {
  const bool reduce = plan.loss.defined() && plan.reduction != Reduction::None;
  if (plan.num_boxes == 0) {
    if (reduce) plan.loss.zero_();
    return;  // (the gradients of an empty call have no elements)
  }
  const bool with_grad = plan.grad_pred || plan.grad_target;
  const uint32_t blocks = capped_blocks(plan.num_boxes, kThreadsPerBlock, resident_blocks<Runtime>());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.pred.scalar_type(), "box_loss_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    const auto args = as_storage_args<storage_t>(make_box_loss_args<scalar_t, T>(plan));
    const BoxLoader load{boxes_vector_aligned(args.pred) && boxes_vector_aligned(args.target)};
    const auto out = BlockReduction<storage_t, T>::template make<scalar_t>(reduce, blocks, plan.loss);
    dispatch_loss_kind(plan.kind, [&](auto kind) {
      constexpr LossKind K = decltype(kind)::value;
      auto* kernel = with_grad ? box_loss_kernel<K, true, storage_t, T> : box_loss_kernel<K, false, storage_t, T>;
      Runtime::launch(kernel, dim3(blocks), dim3(kThreadsPerBlock), args, load, out.block_sums,
                      out.single_block_out);
    });
    out.template finish<Runtime>(args);
  });
}

template <class Runtime>
at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2, const std::string& kind,
                   const std::string& box_format, double eps) {
  const typename Runtime::DeviceGuard device_guard(boxes1.device());
  const BoxIouPlan plan = plan_box_iou(boxes1, boxes2, kind, box_format, eps);
  if (plan.m == 0 || plan.n == 0) return plan.out;
  const dim3 grid(capped_blocks(plan.n, kThreadsPerBlock, kMaxGridDim),
                  capped_blocks(plan.m, kIouTileRows, kMaxGridDim));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.boxes1.scalar_type(), "box_iou_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    dispatch_iou_kind(plan.kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      Runtime::launch(box_iou_kernel<K, storage_t, T>, grid, dim3(kThreadsPerBlock),
                      storage_ptr<scalar_t>(plan.boxes1), storage_ptr<scalar_t>(plan.boxes2), plan.m,
                      plan.n, plan.format, static_cast<T>(eps), mutable_storage_ptr<scalar_t>(plan.out));
    });
  });
  return plan.out;
}

// d out / d boxes1 (row sums) and d out / d boxes2 (column sums), each in a fixed order.
template <class Runtime>
std::tuple<at::Tensor, at::Tensor> box_iou_backward(const at::Tensor& grad, const at::Tensor& boxes1,
                                                    const at::Tensor& boxes2, const std::string& kind,
                                                    const std::string& box_format, double eps,
                                                    bool grad_boxes1, bool grad_boxes2) {
  const typename Runtime::DeviceGuard device_guard(boxes1.device());
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
  const int64_t target_blocks = resident_blocks<Runtime>();
  // Each chunk spans at least 4 staged tiles, so the partial sums stay small beside the pairs.
  const IouGradSplit split1 =
      split_iou_grad(m, n, kWarpsPerBlock, kIouTileCols, target_blocks, 4 * kIouTileCols);
  const IouGradSplit split2 =
      split_iou_grad(n, m, kThreadsPerBlock, kIouTileRows, target_blocks, 4 * kIouTileRows);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "box_iou_backward_cuda", [&] {
    using storage_t = typename CudaStorage<scalar_t>::type;
    using T = compute_t<storage_t>;
    const auto acc_dtype = b1.options().dtype(c10::CppTypeToScalarType<T>::value);
    const auto* g_ptr = storage_ptr<scalar_t>(g);
    const auto* b1_ptr = storage_ptr<scalar_t>(b1);
    const auto* b2_ptr = storage_ptr<scalar_t>(b2);
    const T eps_t = static_cast<T>(eps);
    dispatch_iou_kind(loss_kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      // One chunk: the kernel writes the gradient; more: partial sums, added in chunk order.
      auto launch = [&](const IouGradSplit& split, int64_t num_boxes, const at::Tensor& out, auto kernel) {
        storage_t* out_ptr = mutable_storage_ptr<scalar_t>(out);
        at::Tensor partial;
        T* partial_ptr = nullptr;
        if (split.num_chunks > 1) {
          partial = at::empty({split.num_chunks, num_boxes, 4}, acc_dtype);
          partial_ptr = partial.mutable_data_ptr<T>();
        }
        const dim3 grid(split.blocks_x, static_cast<uint32_t>(split.num_chunks));
        Runtime::launch(kernel, grid, dim3(kThreadsPerBlock), g_ptr, b1_ptr, b2_ptr, m, n, format, eps_t,
                        split.chunk, partial_ptr, partial_ptr == nullptr ? out_ptr : nullptr);
        if (partial_ptr != nullptr) {
          const uint32_t blocks = capped_blocks(num_boxes, kThreadsPerBlock, target_blocks);
          Runtime::launch(box_iou_grad_finish_kernel<storage_t, T>, dim3(blocks), dim3(kThreadsPerBlock),
                          partial_ptr, split.num_chunks, num_boxes, format, out_ptr);
        }
      };
      if (grad_boxes1) launch(split1, m, grad1, box_iou_grad_boxes1_kernel<K, storage_t, T>);
      if (grad_boxes2) launch(split2, n, grad2, box_iou_grad_boxes2_kernel<K, storage_t, T>);
    });
  });
  return {grad1, grad2};
}

// Registers the box operators of the backend `Runtime` runs (the CUDA one, or the host test
// build's) in `m`.
template <class Runtime>
void register_box_launchers(torch::Library& m) {
  register_box_ops<BoxLossOps<run_box_loss<Runtime>, typename Runtime::DeviceGuard>>(
      m, &box_iou<Runtime>, &box_iou_backward<Runtime>);
}

}  // namespace cuda
}  // namespace alwa
