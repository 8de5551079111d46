// Argument parsing, validation and output allocation of sigmoid_focal_loss, shared by the CPU
// and CUDA launchers: the one place the op checks its arguments.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <type_traits>

#include "alwa/focal_loss.h"
#include "common/backend.h"
#include "common/checks.h"

namespace alwa {

// sigmoid_focal_loss's parameters in schema order, and the same names passing them on.
#define ALWA_FOCAL_LOSS_PARAMS                                                                  \
  const at::Tensor &logits, const at::Tensor &targets, const std::optional<at::Tensor> &weight, \
      const std::optional<at::Tensor> &avg_factor, double alpha, double gamma,                  \
      const std::string &reduction
#define ALWA_FOCAL_LOSS_ARGS logits, targets, weight, avg_factor, alpha, gamma, reduction

using FocalLossFn = at::Tensor(ALWA_FOCAL_LOSS_PARAMS);
using FocalLossWithGradFn = std::tuple<at::Tensor, at::Tensor>(ALWA_FOCAL_LOSS_PARAMS);

struct FocalLossPlan {
  Reduction reduction;
  double alpha_pos, alpha_neg, gamma;
  int64_t num_rows, num_classes;
  bool hard_targets;        // class indices (int64), else float targets of the logits' shape
  bool weight_per_element;  // weight of the logits' shape, else one per row
  double scale;             // 1, or 1 / count for "mean" without avg_factor
  // Inputs as the kernels read them: contiguous; soft targets and weight in the logits' dtype;
  // avg_factor a float64 0-dim tensor on the logits' device. Undefined where not given or used.
  at::Tensor logits, labels, soft_targets, weight, avg_factor;
  bool grad;
  // Outputs: the loss (the logits' shape for "none", 0-dim otherwise) and, when asked for, the
  // gradient of the (weighted, reduced) loss w.r.t. the logits (else an empty tensor).
  at::Tensor loss, grad_logits;
};

FocalLossPlan plan_focal_loss(ALWA_FOCAL_LOSS_PARAMS, bool grad, OutputAllocator allocate_grad);

// The kernel arguments of a planned call.
template <class scalar_t, class T>
FocalLossArgs<scalar_t, T> make_focal_loss_args(const FocalLossPlan& plan) {
  FocalLossArgs<scalar_t, T> args;
  args.logits = plan.logits.const_data_ptr<scalar_t>();
  args.labels = plan.hard_targets ? plan.labels.const_data_ptr<int64_t>() : nullptr;
  args.soft_targets = plan.hard_targets ? nullptr : plan.soft_targets.const_data_ptr<scalar_t>();
  args.weight = plan.weight.defined() ? plan.weight.const_data_ptr<scalar_t>() : nullptr;
  args.weight_per_element = plan.weight_per_element;
  const bool reduce = plan.reduction != Reduction::None;
  args.loss = reduce ? nullptr : plan.loss.template mutable_data_ptr<scalar_t>();
  args.grad = plan.grad ? plan.grad_logits.template mutable_data_ptr<scalar_t>() : nullptr;
  args.num_rows = plan.num_rows;
  args.num_classes = plan.num_classes;
  args.params = FocalParams<T>{static_cast<T>(plan.alpha_pos), static_cast<T>(plan.alpha_neg),
                               static_cast<T>(plan.gamma)};
  args.grad_scale = static_cast<T>(plan.scale);
  args.avg_factor = plan.avg_factor.defined() ? plan.avg_factor.const_data_ptr<double>() : nullptr;
  args.reduce = reduce;
  return args;
}

inline FocalGamma focal_gamma_form(double gamma) {
  if (gamma == 2.0) return FocalGamma::Two;
  if (gamma == 0.0) return FocalGamma::Zero;
  return FocalGamma::General;
}

// Calls f(std::integral_constant<FocalGamma, ...>{}): gamma = 2 and gamma = 0 have their own
// instantiations.
template <class F>
void dispatch_focal_gamma(double gamma, F&& f) {
  switch (focal_gamma_form(gamma)) {
    case FocalGamma::Two: f(std::integral_constant<FocalGamma, FocalGamma::Two>{}); break;
    case FocalGamma::Zero: f(std::integral_constant<FocalGamma, FocalGamma::Zero>{}); break;
    default: f(std::integral_constant<FocalGamma, FocalGamma::General>{}); break;
  }
}

// The operators of a backend, made from its function that runs a plan (which also fills the
// outputs of an empty call), the guard it needs around a call and its gradient allocator.
template <void (*Run)(FocalLossPlan&), class DeviceGuard, OutputAllocator AllocateGrad = fresh_output>
struct FocalLossOps {
  static std::tuple<at::Tensor, at::Tensor> with_grad(ALWA_FOCAL_LOSS_PARAMS) {
    const DeviceGuard guard(logits.device());
    FocalLossPlan plan = plan_focal_loss(ALWA_FOCAL_LOSS_ARGS, true, AllocateGrad);
    Run(plan);
    return {plan.loss, plan.grad_logits};
  }
  static at::Tensor loss_only(ALWA_FOCAL_LOSS_PARAMS) {
    const DeviceGuard guard(logits.device());
    FocalLossPlan plan = plan_focal_loss(ALWA_FOCAL_LOSS_ARGS, false, AllocateGrad);
    Run(plan);
    return plan.loss;
  }
  static void register_in(torch::Library& m) {
    m.impl("sigmoid_focal_loss", &loss_only);
    m.impl("sigmoid_focal_loss_with_grad", &with_grad);
  }
};

}  // namespace alwa
