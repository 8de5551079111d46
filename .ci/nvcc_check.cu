// Compile check of the CUDA kernels with nvcc alone (no torch, no GPU): takes the address of
// every kernel for every storage type and loss kind (and the focal loss's, the distribution
// focal loss's and the assigner's), so each one is instantiated and goes through ptxas. Built by .ci/nvcc_check.sh, which also checks that
// ptxas reports no local-memory spills. Not part of the extension's build
// (setup.py compiles csrc/cuda/*.cu, and this file is not there).
#include "cuda/box_iou_backward_kernels.cuh"
#include "cuda/box_iou_kernel.cuh"
#include "cuda/box_loss_kernels.cuh"
#include "cuda/dfl_kernels.cuh"
#include "cuda/focal_loss_kernels.cuh"
#include "cuda/task_aligned_assign_kernels.cuh"

#include <type_traits>

namespace alwa {
namespace cuda {
namespace {

template <class F>
void for_each_focal_gamma(F&& f) {
  f(std::integral_constant<FocalGamma, FocalGamma::Two>{});
  f(std::integral_constant<FocalGamma, FocalGamma::Zero>{});
  f(std::integral_constant<FocalGamma, FocalGamma::General>{});
}

template <class S, class T>
void instantiate_assigner(const void** out, int& count) {
  out[count++] = reinterpret_cast<const void*>(&tal_select_kernel<S, T>);
  out[count++] = reinterpret_cast<const void*>(&tal_resolve_kernel<S, T>);
  out[count++] = reinterpret_cast<const void*>(&tal_gt_kernel<S, T>);
  out[count++] = reinterpret_cast<const void*>(&tal_write_kernel<S, T>);
}

template <LossKind K, class S>
void instantiate_kind(const void** out, int& count) {
  using T = compute_t<S>;
  out[count++] = reinterpret_cast<const void*>(&box_loss_kernel<K, false, S, T>);
  out[count++] = reinterpret_cast<const void*>(&box_loss_kernel<K, true, S, T>);
  if constexpr (has_alpha_form(K)) {  // the kinds box_iou takes
    out[count++] = reinterpret_cast<const void*>(&box_iou_kernel<K, S, T>);
    out[count++] = reinterpret_cast<const void*>(&box_iou_grad_boxes1_kernel<K, S, T>);
    out[count++] = reinterpret_cast<const void*>(&box_iou_grad_boxes2_kernel<K, S, T>);
  }
}

template <class S>
void instantiate_type(const void** out, int& count) {
  using T = compute_t<S>;
  // Every row of the kinds table (alwa/kinds.h), so no kind can be left out.
#define ALWA_INSTANTIATE(k, name, iou_family, alpha_form) \
  instantiate_kind<LossKind::k, S>(out, count);
  ALWA_LOSS_KINDS(ALWA_INSTANTIATE)
#undef ALWA_INSTANTIATE
  out[count++] = reinterpret_cast<const void*>(&reduce_block_sums_kernel<BoxLossArgs<S, T>, S, T>);
  out[count++] = reinterpret_cast<const void*>(&box_iou_grad_finish_kernel<S, T>);
  for_each_focal_gamma([&](auto gamma) {
    constexpr FocalGamma G = decltype(gamma)::value;
    out[count++] = reinterpret_cast<const void*>(&focal_loss_kernel<false, G, S, T>);
    out[count++] = reinterpret_cast<const void*>(&focal_loss_kernel<true, G, S, T>);
  });
  out[count++] = reinterpret_cast<const void*>(&reduce_block_sums_kernel<FocalLossArgs<S, T>, S, T>);
  out[count++] = reinterpret_cast<const void*>(&dfl_kernel<false, S, T>);
  out[count++] = reinterpret_cast<const void*>(&dfl_kernel<true, S, T>);
  out[count++] = reinterpret_cast<const void*>(&reduce_block_sums_kernel<DflArgs<S, T>, S, T>);
  out[count++] = reinterpret_cast<const void*>(&dfl_integral_kernel<false, S, T>);
  out[count++] = reinterpret_cast<const void*>(&dfl_integral_kernel<true, S, T>);
  // The assigner: scores of every storage type, boxes in float or double.
  instantiate_assigner<S, float>(out, count);
  instantiate_assigner<S, double>(out, count);
}

}  // namespace

// Fills `out` with every kernel's address and returns how many there are.
int nvcc_check_kernels(const void** out) {
  int count = 0;
  instantiate_type<float>(out, count);
  instantiate_type<double>(out, count);
  instantiate_type<__half>(out, count);
  instantiate_type<__nv_bfloat16>(out, count);
  return count;
}

}  // namespace cuda
}  // namespace alwa
