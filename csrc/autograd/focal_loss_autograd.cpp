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

#include "autograd/no_double_backward.h"
#include "focal_loss_plan.h"

namespace alwa {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The reductions as static strings: the backward keeps an index, not a copy.
const std::array<std::string, 3> kReductions = {"none", "mean", "sum"};

int64_t reduction_index(const std::string& name) {
  for (size_t k = 0; k < kReductions.size(); ++k) {
    if (kReductions[k] == name) return static_cast<int64_t>(k);
  }
  parse_reduction(name);  // raises, naming the argument
  return 0;
}

at::Tensor call_focal_loss(const at::Tensor& logits, const at::Tensor& targets,
                           const std::optional<at::Tensor>& weight,
                           const std::optional<at::Tensor>& avg_factor, double alpha, double gamma,
                           const std::string& reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("alwa::sigmoid_focal_loss", "")
                       .typed<FocalLossFn>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(logits, targets, weight, avg_factor, alpha, gamma, reduction);
}

std::tuple<at::Tensor, at::Tensor> call_focal_loss_with_grad(
    const at::Tensor& logits, const at::Tensor& targets, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& avg_factor, double alpha, double gamma,
    const std::string& reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("alwa::sigmoid_focal_loss_with_grad", "")
                       .typed<FocalLossWithGradFn>();
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
    ctx->saved_data["reduction"] = reduction_index(reduction);  // (after the op: a valid name)
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &targets = saved[1], &weight = saved[2];
    const at::Tensor &avg_factor = saved[3], &loss_out = saved[4];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gamma = ctx->saved_data["gamma"].toDouble();
    const std::string& reduction = kReductions[ctx->saved_data["reduction"].toInt()];
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
      // d loss / d weight: the unweighted element losses times each element's upstream
      // gradient, through the reduction; a per-anchor weight sums its row.
      const at::Tensor unweighted =
          call_focal_loss(logits, targets, std::nullopt, std::nullopt, alpha, gamma, "none");
      at::Tensor scaled = grad_loss;
      if (reduction == "mean") {
        scaled = avg_factor.defined()
                     ? grad_loss / (avg_factor + kAvgFactorEps)
                     : grad_loss / static_cast<double>(std::max<int64_t>(unweighted.numel(), 1));
      }
      grad_weight = unweighted * scaled;
      if (weight.sizes() != logits.sizes()) grad_weight = grad_weight.sum(-1);
      grad_weight = grad_weight.to(weight.scalar_type());
    }
    if (need_avg_factor) {
      grad_avg_factor =
          (-grad_loss * loss_out / (avg_factor + kAvgFactorEps)).to(avg_factor.scalar_type());
    }
    variable_list grads = guard_double_backward({grad_logits, grad_weight, grad_avg_factor},
                                                "alwa::sigmoid_focal_loss", logits, targets);
    return {grads[0], at::Tensor(), grads[1], grads[2], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor focal_loss_autograd(ALWA_FOCAL_LOSS_PARAMS) {
  const bool differentiable =
      at::GradMode::is_enabled() &&
      (logits.requires_grad() || targets.requires_grad() ||
       (weight.has_value() && weight->requires_grad()) ||
       (avg_factor.has_value() && avg_factor->requires_grad()));
  if (!differentiable) {  // inference: the loss alone, no graph
    return call_focal_loss(logits, targets, weight, avg_factor, alpha, gamma, reduction);
  }
  return FocalLossFunction::apply(logits, targets, weight, avg_factor, alpha, gamma, reduction)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, Autograd, m) { m.impl("sigmoid_focal_loss", &focal_loss_autograd); }

}  // namespace alwa
