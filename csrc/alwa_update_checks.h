// Argument parsing and validation shared by the CPU and CUDA launchers of alwa_step and
// alwa_pooled_update: the one place their arguments are checked (alwa_ext.ALWA checks only its
// own constructor arguments, which the ops never see). They look at metadata only, never at
// values, so they cost no device sync.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "alwa/alwa_update.h"

namespace alwa {

// mode and statistic, parsed (errors name `mode` and `statistic`, alwa_ext.ALWA's arguments).
AlwaRule parse_alwa_rule(const std::string& mode, const std::string& statistic);

// The ALWA state tensors: weights float64 (2,), window float64 (kWindowRows, kWindowFields), step/skipped/
// num_updates/held int64 0-dim, all contiguous and on `device`.
void check_alwa_state(const at::Tensor& weights, const at::Tensor& window, const at::Tensor& step,
                      const at::Tensor& skipped, const at::Tensor& num_updates,
                      const at::Tensor& held, const at::Device& device);

// alwa_step's parameters in schema order (the CPU and CUDA kernels take them).
#define ALWA_STEP_PARAMS                                                                     \
  const at::Tensor &loss_cls, const at::Tensor &loss_reg, at::Tensor &weights,               \
      at::Tensor &window, at::Tensor &step, at::Tensor &skipped, at::Tensor &num_updates,    \
      at::Tensor &held, int64_t interval, const std::string &alwa_mode,                      \
      const std::string &update, const std::string &statistic
#define ALWA_STEP_ARGS                                                                      \
  loss_cls, loss_reg, weights, window, step, skipped, num_updates, held, interval, alwa_mode, \
      update, statistic

// An alwa_step call, checked: the losses 0-dim floating point on one device, the state on
// it too (check_alwa_state), interval 0 (record only) or >= 2, and the strings parsed.
struct AlwaStepCall {
  AlwaRule rule;
  AlwaUpdate update;
  AlwaState state;
};
AlwaStepCall check_alwa_step(ALWA_STEP_PARAMS);

// rank_windows: float64 (num_ranks, kWindowRows, kWindowFields) contiguous, num_ranks >= 1, and the state it
// updates (weights, window, num_updates), all on one device.
void check_pooled_update_args(const at::Tensor& rank_windows, const at::Tensor& weights,
                              const at::Tensor& window, const at::Tensor& num_updates,
                              const at::Tensor& held);

}  // namespace alwa
