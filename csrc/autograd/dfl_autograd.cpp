// Autograd of distribution_focal_loss, in C++ (registered at the Autograd key, like the focal
// loss's): the gradient is computed in the forward pass, with the loss
// (distribution_focal_loss_with_grad), and the backward scales it by grad_output in place. A
// retained graph differentiated a second time computes it again. Gradients flow to pred_dist,
// a weight and a tensor avg_factor; the target is a constant (one that requires a gradient is
// refused rather than given none). Second-order gradients raise.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

#include "autograd/function_helpers.h"
#include "autograd/reduction_grads.h"
#include "dfl_plan.h"

namespace alwa {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_dfl(ALWA_DFL_PARAMS) {
  static auto op = find_op<DflFn>("alwa::distribution_focal_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(ALWA_DFL_ARGS);
}

std::tuple<at::Tensor, at::Tensor> call_dfl_with_grad(ALWA_DFL_PARAMS) {
  static auto op = find_op<DflWithGradFn>("alwa::distribution_focal_loss_with_grad");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(ALWA_DFL_ARGS);
}

class DflFunction : public torch::autograd::Function<DflFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, ALWA_DFL_PARAMS) {
    TORCH_CHECK_VALUE(!target.requires_grad(),
                      "target: distribution_focal_loss has no gradient w.r.t. its target; pass "
                      "target.detach()");
    const bool need_avg_factor = avg_factor.has_value() && avg_factor->requires_grad();
    at::Tensor loss;
    if (pred_dist.requires_grad()) {
      at::Tensor grad;
      std::tie(loss, grad) = call_dfl_with_grad(ALWA_DFL_ARGS);
      ctx->saved_data["grad"] = grad;  // ours alone: backward may scale it in place
    } else {
      loss = call_dfl(ALWA_DFL_ARGS);
    }
    ctx->save_for_backward({pred_dist, target, weight.value_or(at::Tensor()),
                            avg_factor.value_or(at::Tensor()), need_avg_factor ? loss : at::Tensor()});
    ctx->saved_data["reduction"] = static_cast<int64_t>(parse_reduction(reduction));
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &pred_dist = saved[0], &target = saved[1], &weight = saved[2];
    const at::Tensor &avg_factor = saved[3], &loss_out = saved[4];
    const auto parsed_reduction = static_cast<Reduction>(ctx->saved_data["reduction"].toInt());
    const std::string& reduction = reduction_name(parsed_reduction);
    const at::Tensor grad_loss = grad_outputs[0];
    // needs_input_grad counts the tensors given (None weight or avg_factor has no edge).
    const bool need_pred = ctx->needs_input_grad(0);
    const bool need_weight = weight.defined() && ctx->needs_input_grad(2);
    const bool need_avg_factor = avg_factor.defined() && ctx->needs_input_grad(weight.defined() ? 3 : 2);

    at::Tensor grad_pred;
    if (need_pred) {
      // A row's loss has one gradient per bin: "none"'s upstream gradient spreads over them.
      const at::Tensor upstream = parsed_reduction == Reduction::None ? grad_loss.unsqueeze(-1) : grad_loss;
      auto it = ctx->saved_data.find("grad");
      if (it != ctx->saved_data.end()) {
        grad_pred = it->second.toTensor().mul_(upstream);
        ctx->saved_data.erase(it);  // a second backward (retain_graph) computes it again
      } else {
        grad_pred = std::get<1>(call_dfl_with_grad(pred_dist, target, optional_of(weight),
                                                   optional_of(avg_factor), reduction))
                        .mul_(upstream);
      }
    }
    at::Tensor grad_weight, grad_avg_factor;
    if (need_weight) {
      // Unweighted, every row is computed (a zero weight skips its row only in the forward).
      const at::Tensor unweighted =
          call_dfl(pred_dist, target, std::nullopt, std::nullopt, reduction_name(Reduction::None));
      grad_weight = weight_grad(unweighted, grad_loss, parsed_reduction, avg_factor);
      if (weight.sizes() != target.sizes()) grad_weight = grad_weight.sum(-1);  // per box
      grad_weight = grad_weight.to(weight.scalar_type());
    }
    if (need_avg_factor) grad_avg_factor = avg_factor_grad(grad_loss, loss_out, avg_factor);
    variable_list grads = guard_double_backward({grad_pred, grad_weight, grad_avg_factor},
                                                "alwa::distribution_focal_loss", pred_dist, target);
    return {grads[0], at::Tensor(), grads[1], grads[2], at::Tensor()};
  }
};

// distribution_expectation: its backward its own op (with a fake kernel, so torch.compile sees
// it), which takes the softmax again.
class DflIntegralFunction : public torch::autograd::Function<DflIntegralFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& pred_dist) {
    static auto op = find_op<at::Tensor(const at::Tensor&)>("alwa::distribution_expectation");
    ctx->save_for_backward({pred_dist});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {op.call(pred_dist)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&)>("alwa::distribution_expectation_backward");
    const at::Tensor pred_dist = ctx->get_saved_variables()[0];
    at::Tensor grad;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      grad = op.call(grad_outputs[0].to(pred_dist.scalar_type()), pred_dist);
    }
    return guard_double_backward({grad}, "alwa::distribution_expectation", pred_dist, pred_dist);
  }
};

at::Tensor dfl_integral_autograd(const at::Tensor& pred_dist) {
  if (!at::GradMode::is_enabled() || !pred_dist.requires_grad()) {
    static auto op = find_op<at::Tensor(const at::Tensor&)>("alwa::distribution_expectation");
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(pred_dist);
  }
  return DflIntegralFunction::apply(pred_dist)[0];
}

at::Tensor dfl_autograd(ALWA_DFL_PARAMS) {
  if (!needs_graph(pred_dist, target, weight, avg_factor)) return call_dfl(ALWA_DFL_ARGS);
  return DflFunction::apply(ALWA_DFL_ARGS)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, Autograd, m) {
  m.impl("distribution_focal_loss", &dfl_autograd);
  m.impl("distribution_expectation", &dfl_integral_autograd);
}

}  // namespace alwa
