// Argument parsing, validation and output allocation of distribution_focal_loss, shared by the
// CPU and CUDA launchers: the one place the op checks its arguments.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "alwa/distribution_focal_loss.h"
#include "common/backend.h"
#include "common/checks.h"

namespace alwa {

// distribution_focal_loss's parameters in schema order, and the same names passing them on.
#define ALWA_DFL_PARAMS                                                                           \
  const at::Tensor &pred_dist, const at::Tensor &target, const std::optional<at::Tensor> &weight, \
      const std::optional<at::Tensor> &avg_factor, const std::string &reduction
#define ALWA_DFL_ARGS pred_dist, target, weight, avg_factor, reduction

using DflFn = at::Tensor(ALWA_DFL_PARAMS);
using DflWithGradFn = std::tuple<at::Tensor, at::Tensor>(ALWA_DFL_PARAMS);

struct DflPlan {
  Reduction reduction;
  int64_t num_rows, num_bins;
  double scale;          // 1, or 1 / rows for "mean" without avg_factor
  // Inputs as the kernels read them: logits contiguous (rows, bins); target and weight
  // contiguous in the compute type (float32 for the half types), the weight one per distance
  // (a per-box one spread over the box's sides); avg_factor float64.
  at::Tensor logits, target, weight, avg_factor;
  bool grad;
  // Outputs: the loss (target's shape for "none", 0-dim otherwise) and, when asked for,
  // d (weighted, reduced) loss / d pred_dist (else an empty tensor).
  at::Tensor loss, grad_logits;
};

// The dtype the kernels compute a storage dtype in: float32 for the half types.
inline at::ScalarType compute_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// A distribution_expectation call (forward, or backward with `grad` d out / d E), checked, its
// output allocated: E (pred_dist's shape without its bins), or d out / d pred_dist.
struct DflIntegralPlan {
  int64_t num_rows, num_bins;
  at::Tensor logits, grad_in, out;
};
DflIntegralPlan plan_dfl_integral(const at::Tensor& pred_dist, const at::Tensor* grad,
                                  OutputAllocator allocate_grad);

template <class scalar_t, class T>
DflIntegralArgs<scalar_t, T> make_dfl_integral_args(const DflIntegralPlan& plan) {
  DflIntegralArgs<scalar_t, T> args;
  args.logits = plan.logits.const_data_ptr<scalar_t>();
  args.grad_in = plan.grad_in.defined() ? plan.grad_in.const_data_ptr<scalar_t>() : nullptr;
  args.out = plan.out.template mutable_data_ptr<scalar_t>();
  args.num_rows = plan.num_rows;
  args.num_bins = plan.num_bins;
  return args;
}

// distribution_expectation and its backward for a backend, from its function that runs a plan.
template <void (*Run)(DflIntegralPlan&), class DeviceGuard, OutputAllocator AllocateGrad = fresh_output>
struct DflIntegralOps {
  static at::Tensor forward(const at::Tensor& pred_dist) {
    const DeviceGuard guard(pred_dist.device());
    DflIntegralPlan plan = plan_dfl_integral(pred_dist, nullptr, AllocateGrad);
    Run(plan);
    return plan.out;
  }
  static at::Tensor backward(const at::Tensor& grad, const at::Tensor& pred_dist) {
    check_device(grad, "grad", pred_dist, "pred_dist");
    const DeviceGuard guard(pred_dist.device());
    DflIntegralPlan plan = plan_dfl_integral(pred_dist, &grad, AllocateGrad);
    Run(plan);
    return plan.out;
  }
  static void register_in(torch::Library& m) {
    m.impl("distribution_expectation", &forward);
    m.impl("distribution_expectation_backward", &backward);
  }
};

// target, weight and avg_factor on pred_dist's device (checked before a device guard is made).
void check_dfl_devices(const at::Tensor& pred_dist, const at::Tensor& target,
                       const std::optional<at::Tensor>& weight,
                       const std::optional<at::Tensor>& avg_factor);

DflPlan plan_dfl(ALWA_DFL_PARAMS, bool grad, OutputAllocator allocate_grad);

template <class scalar_t, class T>
DflArgs<scalar_t, T> make_dfl_args(const DflPlan& plan) {
  DflArgs<scalar_t, T> args;
  args.logits = plan.logits.const_data_ptr<scalar_t>();
  args.target = plan.target.const_data_ptr<T>();
  args.weight = plan.weight.defined() ? plan.weight.const_data_ptr<T>() : nullptr;
  const bool reduce = plan.reduction != Reduction::None;
  args.loss = reduce ? nullptr : plan.loss.template mutable_data_ptr<scalar_t>();
  args.grad = plan.grad ? plan.grad_logits.template mutable_data_ptr<scalar_t>() : nullptr;
  args.num_rows = plan.num_rows;
  args.num_bins = plan.num_bins;
  args.grad_scale = static_cast<T>(plan.scale);
  args.avg_factor = plan.avg_factor.defined() ? plan.avg_factor.const_data_ptr<double>() : nullptr;
  args.reduce = reduce;
  return args;
}

// The operators of a backend, made from its function that runs a plan (which also fills the
// outputs of an empty call), the guard it needs around a call and its gradient allocator.
// The plan checks the devices before the guard is made, so mixed devices are a clean error.
template <void (*Run)(DflPlan&), class DeviceGuard, OutputAllocator AllocateGrad = fresh_output>
struct DflOps {
  static std::tuple<at::Tensor, at::Tensor> with_grad(ALWA_DFL_PARAMS) {
    check_dfl_devices(pred_dist, target, weight, avg_factor);
    const DeviceGuard guard(pred_dist.device());
    DflPlan plan = plan_dfl(ALWA_DFL_ARGS, true, AllocateGrad);
    Run(plan);
    return {plan.loss, plan.grad_logits};
  }
  static at::Tensor loss_only(ALWA_DFL_PARAMS) {
    check_dfl_devices(pred_dist, target, weight, avg_factor);
    const DeviceGuard guard(pred_dist.device());
    DflPlan plan = plan_dfl(ALWA_DFL_ARGS, false, AllocateGrad);
    Run(plan);
    return plan.loss;
  }
  static void register_in(torch::Library& m) {
    m.impl("distribution_focal_loss", &loss_only);
    m.impl("distribution_focal_loss_with_grad", &with_grad);
  }
};

}  // namespace alwa
