// Autograd of sigmoid_focal_loss, in C++ (registered at the Autograd key, like box_loss's): the
// gradient is computed in the forward pass, with the loss (sigmoid_focal_loss_with_grad), and the
// backward scales it by grad_output in place. The logistic terms are the cost of the op, so they
// run once; the gradient tensor is the only one written besides the loss. A retained graph
// differentiated a second time computes the gradient again. Gradients flow to the logits, a
// weight and a tensor avg_factor; targets are labels (a float target that requires a gradient
// is refused rather than given none). Second-order gradients raise.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <string>

#include "autograd/function_helpers.h"
#include "autograd/reduction_grads.h"
#include "focal_loss_plan.h"

namespace alwa {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_focal_loss(const at::Tensor& logits, const at::Tensor& targets,
                           const std::optional<at::Tensor>& weight,
                           const std::optional<at::Tensor>& avg_factor, double alpha, double gamma,
                           const std::string& reduction) {
  static auto op = find_op<FocalLossFn>("alwa::sigmoid_focal_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(logits, targets, weight, avg_factor, alpha, gamma, reduction);
}

std::tuple<at::Tensor, at::Tensor> call_focal_loss_with_grad(
    const at::Tensor& logits, const at::Tensor& targets, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& avg_factor, double alpha, double gamma,
    const std::string& reduction) {
  static auto op = find_op<FocalLossWithGradFn>("alwa::sigmoid_focal_loss_with_grad");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(logits, targets, weight, avg_factor, alpha, gamma, reduction);
}

class FocalLossFunction : public torch::autograd::Function<FocalLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits,
                               const at::Tensor& targets, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& avg_factor, double alpha,
                               double gamma, const std::string& reduction) {
    TORCH_CHECK_VALUE(!targets.requires_grad(),
                      "targets: sigmoid_focal_loss has no gradient w.r.t. its targets; pass "
                      "targets.detach()");
    const bool need_avg_factor = avg_factor.has_value() && avg_factor->requires_grad();
    at::Tensor loss;
    if (logits.requires_grad()) {
      at::Tensor grad;
      std::tie(loss, grad) =
          call_focal_loss_with_grad(logits, targets, weight, avg_factor, alpha, gamma, reduction);
      // Kept out of save_for_backward: it is ours alone, so backward may scale it in place.
      ctx->saved_data["grad"] = grad;
    } else {
      loss = call_focal_loss(logits, targets, weight, avg_factor, alpha, gamma, reduction);
    }
    ctx->save_for_backward({logits, targets, weight.value_or(at::Tensor()),
                            avg_factor.value_or(at::Tensor()), need_avg_factor ? loss : at::Tensor()});
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["reduction"] = static_cast<int64_t>(parse_reduction(reduction));
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &targets = saved[1], &weight = saved[2];
    const at::Tensor &avg_factor = saved[3], &loss_out = saved[4];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gamma = ctx->saved_data["gamma"].toDouble();
    const auto parsed_reduction = static_cast<Reduction>(ctx->saved_data["reduction"].toInt());
    const std::string& reduction = reduction_name(parsed_reduction);
    const at::Tensor grad_loss = grad_outputs[0];
    // needs_input_grad counts the tensors given (None weight or avg_factor has no edge).
    const bool need_logits = ctx->needs_input_grad(0);
    const bool need_weight = weight.defined() && ctx->needs_input_grad(2);
    const bool need_avg_factor = avg_factor.defined() && ctx->needs_input_grad(weight.defined() ? 3 : 2);

    at::Tensor grad_logits;
    if (need_logits) {
      auto it = ctx->saved_data.find("grad");
      if (it != ctx->saved_data.end()) {
        grad_logits = it->second.toTensor().mul_(grad_loss);
        ctx->saved_data.erase(it);  // a second backward (retain_graph) computes it again
      } else {
        grad_logits = std::get<1>(call_focal_loss_with_grad(
                          logits, targets, optional_of(weight), optional_of(avg_factor), alpha,
                          gamma, reduction))
                          .mul_(grad_loss);
      }
    }
    at::Tensor grad_weight, grad_avg_factor;
    if (need_weight) {
      // A per-anchor weight sums its row.
      const at::Tensor unweighted = call_focal_loss(logits, targets, std::nullopt, std::nullopt,
                                                    alpha, gamma, reduction_name(Reduction::None));
      grad_weight = weight_grad(unweighted, grad_loss, parsed_reduction, avg_factor);
      if (weight.sizes() != logits.sizes()) grad_weight = grad_weight.sum(-1);
      grad_weight = grad_weight.to(weight.scalar_type());
    }
    if (need_avg_factor) grad_avg_factor = avg_factor_grad(grad_loss, loss_out, avg_factor);
    variable_list grads = guard_double_backward({grad_logits, grad_weight, grad_avg_factor},
                                                "alwa::sigmoid_focal_loss", logits, targets);
    return {grads[0], at::Tensor(), grads[1], grads[2], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor focal_loss_autograd(ALWA_FOCAL_LOSS_PARAMS) {
  if (!needs_graph(logits, targets, weight, avg_factor)) {  // inference: the loss alone, no graph
    return call_focal_loss(logits, targets, weight, avg_factor, alpha, gamma, reduction);
  }
  return FocalLossFunction::apply(logits, targets, weight, avg_factor, alpha, gamma, reduction)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, Autograd, m) { m.impl("sigmoid_focal_loss", &focal_loss_autograd); }

}  // namespace alwa
