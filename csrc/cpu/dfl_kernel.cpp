// CPU kernel of distribution_focal_loss: one pass over the rows computes the loss, applies the
// weight, reduces and (when asked) writes the gradient. The math is
// alwa/distribution_focal_loss.h; float32 goes through the SIMD path of this CPU where it has
// one. Rows of weight 0 are skipped (ultralytics' background anchors, most of a YOLO head).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "common/cpu/block_sum.h"
#include "cpu/cpu_isa.h"
#include "cpu/reused_buffer.h"
#include "dfl_plan.h"

namespace alwa {
namespace {

// The block of the deterministic sum (common/cpu/block_sum.h), in rows.
constexpr int64_t kRowsPerBlock = 1024;

// Targets are read here, on the host: a CPU call can refuse one out of range (the CUDA kernel,
// which must not synchronise, asserts on the device instead). Skipped rows are not read.
template <class T>
void check_targets(const DflPlan& plan) {
  const T* target = plan.target.const_data_ptr<T>();
  const T* weight = plan.weight.defined() ? plan.weight.const_data_ptr<T>() : nullptr;
  for (int64_t row = 0; row < plan.num_rows; ++row) {
    if (weight != nullptr && weight[row] == T(0)) continue;
    TORCH_CHECK_VALUE(dfl_target_valid(target[row], plan.num_bins),
                      "target: expected distances in [0, num_bins - 1] = [0, ", plan.num_bins - 1,
                      "], got ", target[row], " at index ", row);
  }
}

template <typename scalar_t, bool kGrad>
void dfl_cpu_typed(DflPlan& plan) {
  using T = at::opmath_type<scalar_t>;
  const auto args = make_dfl_args<scalar_t, T>(plan);
  const T grad_scale = reduction_scale(args);
  cpu::DflVecFn vec_fn = nullptr;
  if constexpr (std::is_same_v<scalar_t, float>) vec_fn = cpu::dfl_vec_fn(args, kGrad);
  const bool reduce = plan.reduction != Reduction::None;
  const double total = cpu::block_sum(plan.num_rows, kRowsPerBlock, reduce, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (vec_fn != nullptr) return vec_fn(args, begin, end, grad_scale);
    }
    double sum = 0.0;
    for (int64_t row = begin; row < end; ++row) sum += static_cast<double>(dfl_row<kGrad>(args, row, grad_scale));
    return sum;
  });
  if (reduce) cpu::store_reduced(plan.loss.mutable_data_ptr<scalar_t>(), total, plan.scale, args.avg_factor);
}

// The gradient is as large as the logits (a YOLO head's are 34 MB at batch 16): the last one's
// memory is reused once released (cpu/reused_buffer.h).
at::Tensor reused_gradient(at::IntArrayRef sizes, const at::TensorOptions& options) {
  static auto* buffer = new cpu::ReusedBuffer();  // never deleted: see cpu/reused_buffer.h
  return buffer->empty(sizes, options);
}

void run_dfl_cpu(DflPlan& plan) {
  if (plan.target.scalar_type() == at::kDouble) {
    check_targets<double>(plan);
  } else {
    check_targets<float>(plan);
  }
  if (plan.num_rows == 0) {
    if (plan.reduction != Reduction::None) plan.loss.zero_();
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "distribution_focal_loss_cpu", [&] {
    if (plan.grad) {
      dfl_cpu_typed<scalar_t, true>(plan);
    } else {
      dfl_cpu_typed<scalar_t, false>(plan);
    }
  });
}

// distribution_expectation's gradient: as large as the logits, its memory of its own.
at::Tensor reused_integral_gradient(at::IntArrayRef sizes, const at::TensorOptions& options) {
  static auto* buffer = new cpu::ReusedBuffer();  // never deleted: see cpu/reused_buffer.h
  return buffer->empty(sizes, options);
}

// Threads over rows (each row's outputs are its own: no reduction).
template <typename scalar_t>
void dfl_integral_cpu_typed(DflIntegralPlan& plan) {
  using T = at::opmath_type<scalar_t>;
  const auto args = make_dfl_integral_args<scalar_t, T>(plan);
  cpu::DflIntegralVecFn vec_fn = nullptr;
  if constexpr (std::is_same_v<scalar_t, float>) vec_fn = cpu::dfl_integral_vec_fn(args);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / plan.num_bins);
  at::parallel_for(0, plan.num_rows, grain, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (vec_fn != nullptr) return vec_fn(args, begin, end);
    }
    for (int64_t row = begin; row < end; ++row) {
      if (args.grad_in != nullptr) {
        dfl_integral_backward_row(args, row);
      } else {
        dfl_integral_row(args, row);
      }
    }
  });
}

void run_dfl_integral_cpu(DflIntegralPlan& plan) {
  if (plan.num_rows == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.logits.scalar_type(), "distribution_expectation_cpu",
                                  [&] { dfl_integral_cpu_typed<scalar_t>(plan); });
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CPU, m) {
  DflOps<run_dfl_cpu, NoDeviceGuard, reused_gradient>::register_in(m);
  DflIntegralOps<run_dfl_integral_cpu, NoDeviceGuard, reused_integral_gradient>::register_in(m);
}

}  // namespace alwa
