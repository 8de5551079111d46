// The CUDA launchers of alwa_step and alwa_pooled_update, templates over a Runtime
// (common/cuda/runtime.h): check, guard the device, launch one single-thread kernel (so CUDA graphs
// capture it). The device code is in alwa_update_kernel.cuh, the rule in alwa/alwa_update.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "alwa_update_checks.h"
#include "cuda/alwa_update_kernel.cuh"

namespace alwa {
namespace cuda {

inline LossDtype loss_dtype(const at::Tensor& loss) {
  switch (loss.scalar_type()) {
    case at::kFloat:
      return LossDtype::Float32;
    case at::kDouble:
      return LossDtype::Float64;
    case at::kHalf:
      return LossDtype::Float16;
    case at::kBFloat16:
      return LossDtype::BFloat16;
    default:
      TORCH_CHECK_VALUE(false, "alwa_step: unsupported loss dtype ", loss.scalar_type());
  }
}

template <class Runtime>
std::tuple<at::Tensor, at::Tensor> alwa_step(ALWA_STEP_PARAMS) {
  const AlwaStepCall call = check_alwa_step(ALWA_STEP_ARGS);
  const typename Runtime::DeviceGuard device_guard(loss_cls.device());
  at::Tensor applied_cls = at::empty({}, loss_cls.options());
  at::Tensor applied_reg = at::empty({}, loss_reg.options());
  const LossArgs losses{loss_cls.const_data_ptr(), loss_reg.const_data_ptr(),
                        applied_cls.mutable_data_ptr(), applied_reg.mutable_data_ptr(),
                        loss_dtype(loss_cls), loss_dtype(loss_reg)};
  Runtime::launch(alwa_step_kernel, dim3(1), dim3(1), losses, call.state, interval, call.rule,
                  call.update);
  return {applied_cls, applied_reg};
}

template <class Runtime>
void alwa_pooled_update(const at::Tensor& rank_windows, at::Tensor& weights, at::Tensor& window,
                        at::Tensor& num_updates, at::Tensor& held, const std::string& alwa_mode,
                        const std::string& statistic) {
  const AlwaRule rule = parse_alwa_rule(alwa_mode, statistic);
  check_pooled_update_args(rank_windows, weights, window, num_updates, held);
  const typename Runtime::DeviceGuard device_guard(weights.device());
  Runtime::launch(alwa_pooled_update_kernel, dim3(1), dim3(1), rank_windows.const_data_ptr<double>(),
                  rank_windows.size(0), weights.mutable_data_ptr<double>(),
                  window.mutable_data_ptr<double>(), num_updates.mutable_data_ptr<int64_t>(),
                  held.mutable_data_ptr<int64_t>(), rule);
}

template <class Runtime>
void register_alwa_launchers(torch::Library& m) {
  m.impl("alwa_step", &alwa_step<Runtime>);
  m.impl("alwa_pooled_update", &alwa_pooled_update<Runtime>);
}

}  // namespace cuda
}  // namespace alwa
