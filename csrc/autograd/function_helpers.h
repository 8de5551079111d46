// What the C++ autograd functions share: first-order gradients that refuse a second order, and
// the ops below the Autograd key they call.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>

#include <optional>
#include <string>

namespace alwa {

// Passes a computed gradient through and refuses to be differentiated: with create_graph=True
// the first-order gradients are returned as usual, and a gradient of them raises.
class NoDoubleBackward : public torch::autograd::Function<NoDoubleBackward> {
 public:
  // `first` and `second` (the op's inputs) are there so that the output depends on them in the
  // graph: differentiating the gradient then reaches backward (and raises) instead of finding
  // nothing to differentiate and returning zeros.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& grad, const std::string& op_name,
                                                const at::Tensor& first, const at::Tensor& second) {
    ctx->saved_data["op"] = op_name;
    return {grad.clone()};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, ctx->saved_data["op"].toStringRef(),
                ": double backward (a gradient of its gradient, create_graph=True) is not "
                "supported");
  }
};

inline torch::autograd::variable_list guard_double_backward(torch::autograd::variable_list grads,
                                                            const char* op_name,
                                                            const at::Tensor& first,
                                                            const at::Tensor& second) {
  if (!at::GradMode::is_enabled()) return grads;  // create_graph=False: nothing to guard
  for (auto& g : grads) {
    if (g.defined()) g = NoDoubleBackward::apply(g, std::string(op_name), first, second)[0];
  }
  return grads;
}

// The typed handle of op `name` ("alwa::box_loss"), found once by the caller (a static); call
// it under at::AutoDispatchBelowADInplaceOrView, so the call goes to the backend's kernel.
template <class Fn>
c10::TypedOperatorHandle<Fn> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

// Whether a loss call needs a graph: grad mode on, and a gradient wanted of an input, the
// weight or avg_factor (inference calls the op alone).
inline bool needs_graph(const at::Tensor& first, const at::Tensor& second,
                        const std::optional<at::Tensor>& weight,
                        const std::optional<at::Tensor>& avg_factor) {
  return at::GradMode::is_enabled() &&
         (first.requires_grad() || second.requires_grad() ||
          (weight.has_value() && weight->requires_grad()) ||
          (avg_factor.has_value() && avg_factor->requires_grad()));
}

inline std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

}  // namespace alwa
