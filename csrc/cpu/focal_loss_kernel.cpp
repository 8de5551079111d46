// CPU kernel of sigmoid_focal_loss: one pass over the logits computes the loss, applies the
// weight, reduces and (when asked) writes the gradient. The math is alwa/focal_loss.h; float32
// goes through the SIMD path of this CPU where it has one.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/cpu/block_sum.h"
#include "cpu/cpu_isa.h"
#include "cpu/reused_buffer.h"
#include "focal_loss_plan.h"

namespace alwa {
namespace {

// The block of the deterministic sum (cpu/block_sum.h): a multiple of every SIMD width.
constexpr int64_t kElementsPerBlock = 16384;

// Labels are read here, on the host: a CPU call can refuse one out of range (the CUDA kernel,
// which must not synchronise, asserts on the device instead).
void check_labels(const FocalLossPlan& plan) {
  const int64_t* labels = plan.labels.const_data_ptr<int64_t>();
  for (int64_t row = 0; row < plan.num_rows; ++row) {
    TORCH_CHECK_VALUE(focal_label_valid(labels[row], plan.num_classes),
                      "targets: class indices must be in [0, ", plan.num_classes, "] (",
                      plan.num_classes, ": background), got ", labels[row], " at index ", row);
  }
}

template <typename scalar_t, bool kGrad, FocalGamma kGamma>
void focal_loss_cpu_typed(FocalLossPlan& plan) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto args = make_focal_loss_args<scalar_t, acc_t>(plan);
  const int64_t num_elements = plan.num_rows * plan.num_classes;
  const acc_t grad_scale = reduction_scale(args);
  cpu::FocalLossVecFn vec_fn = nullptr;
  if constexpr (std::is_same_v<scalar_t, float>) vec_fn = cpu::focal_loss_vec_fn(args, kGrad, kGamma);
  const bool reduce = plan.reduction != Reduction::None;
  const double total = cpu::block_sum(num_elements, kElementsPerBlock, reduce, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (vec_fn != nullptr) return vec_fn(args, begin, end, grad_scale);
    }
    double sum = 0.0;
    int64_t row = begin / plan.num_classes, col = begin % plan.num_classes;
    for (int64_t i = begin; i < end; ++i) {
      sum += static_cast<double>(focal_loss_element<kGrad, kGamma>(args, row, col, grad_scale));
      if (++col == plan.num_classes) {
        col = 0;
        ++row;
      }
    }
    return sum;
  });
  if (reduce) cpu::store_reduced(plan.loss.mutable_data_ptr<scalar_t>(), total, plan.scale, args.avg_factor);
}

// The gradient is as large as the logits: the last one's memory is reused once released.
at::Tensor reused_gradient(at::IntArrayRef sizes, const at::TensorOptions& options) {
  static auto* buffer = new cpu::ReusedBuffer();  // never deleted: see cpu/reused_buffer.h
  return buffer->empty(sizes, options);
}

void run_focal_loss_cpu(FocalLossPlan& plan) {
  if (plan.hard_targets) check_labels(plan);
  if (plan.num_rows * plan.num_classes == 0) {
    if (plan.reduction != Reduction::None) plan.loss.zero_();
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "sigmoid_focal_loss_cpu", [&] {
    dispatch_focal_gamma(plan.gamma, [&](auto gamma_form) {
      constexpr FocalGamma kGamma = decltype(gamma_form)::value;
      if (plan.grad) {
        focal_loss_cpu_typed<scalar_t, true, kGamma>(plan);
      } else {
        focal_loss_cpu_typed<scalar_t, false, kGamma>(plan);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CPU, m) {
  FocalLossOps<run_focal_loss_cpu, NoDeviceGuard, reused_gradient>::register_in(m);
}

}  // namespace alwa
