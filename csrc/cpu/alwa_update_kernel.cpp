// CPU kernels of alwa_step and alwa_pooled_update: a handful of scalars, so they run inline
// on the calling thread. The rule itself is in alwa/alwa_update.h, shared with CUDA.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "alwa_update_checks.h"

namespace alwa {
namespace {

double load_loss(const at::Tensor& loss) {
  double value = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, loss.scalar_type(), "alwa_load_loss",
                                  [&] { value = static_cast<double>(*loss.const_data_ptr<scalar_t>()); });
  return value;
}

// The weight in the loss dtype, rounded through the op-math type (float for half types) as
// the CUDA kernel does, so both backends return the same bits.
at::Tensor applied_weight(double weight, const at::Tensor& like) {
  at::Tensor out = at::empty({}, like.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, like.scalar_type(), "alwa_applied", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    *out.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(static_cast<opmath_t>(weight));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> alwa_step_cpu(ALWA_STEP_PARAMS) {
  const AlwaStepCall call = check_alwa_step(ALWA_STEP_ARGS);
  double applied[2];
  record_and_update(load_loss(loss_cls), load_loss(loss_reg), call.state, interval, call.rule,
                    call.update, applied);
  return {applied_weight(applied[kWeightCls], loss_cls),
          applied_weight(applied[kWeightReg], loss_reg)};
}

void alwa_pooled_update_cpu(const at::Tensor& rank_windows, at::Tensor& weights,
                            at::Tensor& window, at::Tensor& num_updates, at::Tensor& held,
                            const std::string& alwa_mode, const std::string& statistic) {
  const AlwaRule rule = parse_alwa_rule(alwa_mode, statistic);
  check_pooled_update_args(rank_windows, weights, window, num_updates, held);
  update_from_pooled_windows(rank_windows.const_data_ptr<double>(), rank_windows.size(0),
                             weights.mutable_data_ptr<double>(), window.mutable_data_ptr<double>(),
                             num_updates.mutable_data_ptr<int64_t>(),
                             held.mutable_data_ptr<int64_t>(), rule);
}

}  // namespace
}  // namespace alwa

TORCH_LIBRARY_IMPL(alwa, CPU, m) {
  m.impl("alwa_step", &alwa::alwa_step_cpu);
  m.impl("alwa_pooled_update", &alwa::alwa_pooled_update_cpu);
}
