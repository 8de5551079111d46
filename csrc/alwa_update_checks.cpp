#include "alwa_update_checks.h"

#include "common/checks.h"

namespace alwa {

AlwaRule parse_alwa_rule(const std::string& mode, const std::string& statistic) {
  return AlwaRule{parse_enum<AlwaMode>("mode", mode, kAlwaModeNames),
                  parse_enum<AlwaStatistic>("statistic", statistic, kAlwaStatisticNames)};
}

namespace {

void check_state_tensor(const at::Tensor& tensor, const char* name, at::ScalarType dtype,
                        at::IntArrayRef shape, const at::Device& device) {
  TORCH_CHECK_VALUE(tensor.scalar_type() == dtype, name, ": expected ", dtype, ", got ",
                    tensor.scalar_type());
  TORCH_CHECK_VALUE(tensor.sizes() == shape, name, ": expected shape ", shape, ", got ",
                    tensor.sizes());
  TORCH_CHECK_VALUE(tensor.is_contiguous(), name, ": expected a contiguous tensor");
  TORCH_CHECK_VALUE(tensor.device() == device, name, ": expected a tensor on ", device, ", got ",
                    tensor.device());
}

void check_loss(const at::Tensor& loss, const char* name) {
  TORCH_CHECK_VALUE(loss.dim() == 0, name,
                    ": expected a 0-dim tensor (sum the per-level losses first), got shape ",
                    shape_str(loss.sizes()));
  const auto dtype = loss.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                        dtype == at::kBFloat16,
                    name, ": expected a float32, float64, float16 or bfloat16 tensor, got ", dtype);
}

}  // namespace

void check_alwa_state(const at::Tensor& weights, const at::Tensor& window, const at::Tensor& step,
                      const at::Tensor& skipped, const at::Tensor& num_updates,
                      const at::Tensor& held, const at::Device& device) {
  check_state_tensor(weights, "weights", at::kDouble, {2}, device);
  check_state_tensor(window, "window", at::kDouble, {kWindowRows, kWindowFields}, device);
  check_state_tensor(step, "step", at::kLong, {}, device);
  check_state_tensor(skipped, "skipped", at::kLong, {}, device);
  check_state_tensor(num_updates, "num_updates", at::kLong, {}, device);
  check_state_tensor(held, "held", at::kLong, {}, device);
}

AlwaStepCall check_alwa_step(ALWA_STEP_PARAMS) {
  const AlwaRule rule = parse_alwa_rule(alwa_mode, statistic);
  const AlwaUpdate parsed_update = parse_enum<AlwaUpdate>("update", update, kAlwaUpdateNames);
  check_loss(loss_cls, "loss_cls");
  check_loss(loss_reg, "loss_reg");
  TORCH_CHECK_VALUE(loss_cls.device() == loss_reg.device(),
                    "loss_reg: expected the device of loss_cls (", loss_cls.device(), "), got ",
                    loss_reg.device());
  TORCH_CHECK_VALUE(interval == 0 || interval >= 2,
                    "interval: expected 0 (record only) or an integer >= 2, got ", interval);
  check_alwa_state(weights, window, step, skipped, num_updates, held, loss_cls.device());
  const AlwaState state{weights.mutable_data_ptr<double>(), window.mutable_data_ptr<double>(),
                        step.mutable_data_ptr<int64_t>(), skipped.mutable_data_ptr<int64_t>(),
                        num_updates.mutable_data_ptr<int64_t>(), held.mutable_data_ptr<int64_t>()};
  return AlwaStepCall{rule, parsed_update, state};
}

void check_pooled_update_args(const at::Tensor& rank_windows, const at::Tensor& weights,
                              const at::Tensor& window, const at::Tensor& num_updates,
                              const at::Tensor& held) {
  const at::Device device = weights.device();
  check_state_tensor(weights, "weights", at::kDouble, {2}, device);
  check_state_tensor(window, "window", at::kDouble, {kWindowRows, kWindowFields}, device);
  check_state_tensor(num_updates, "num_updates", at::kLong, {}, device);
  check_state_tensor(held, "held", at::kLong, {}, device);
  TORCH_CHECK_VALUE(rank_windows.scalar_type() == at::kDouble,
                    "rank_windows: expected float64, got ", rank_windows.scalar_type());
  TORCH_CHECK_VALUE(rank_windows.dim() == 3 && rank_windows.size(0) >= 1 &&
                        rank_windows.size(1) == kWindowRows &&
                        rank_windows.size(2) == kWindowFields,
                    "rank_windows: expected shape (num_ranks, ", kWindowRows, ", ", kWindowFields,
                    "), got ", rank_windows.sizes());
  TORCH_CHECK_VALUE(rank_windows.is_contiguous(), "rank_windows: expected a contiguous tensor");
  TORCH_CHECK_VALUE(rank_windows.device() == device, "rank_windows: expected a tensor on ",
                    device, ", got ", rank_windows.device());
}

}  // namespace alwa
