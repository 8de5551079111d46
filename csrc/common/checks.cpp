#include "common/checks.h"

#include <cmath>

namespace alwa {

std::string shape_str(at::IntArrayRef shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + (shape.size() == 1 ? ",)" : ")");
}

std::string quoted_choices(const char* const* names, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) out += ", ";
    out += std::string("'") + names[i] + "'";
  }
  return out;
}

int parse_choice(const char* arg, const std::string& value, const char* const* names, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (value == names[i]) return static_cast<int>(i);
  }
  TORCH_CHECK_VALUE(false, arg, ": expected one of ", quoted_choices(names, count), ", got '",
                    value, "'");
}

void check_like(const at::Tensor& other, const char* name, const at::Tensor& ref,
                const char* ref_name, bool shape) {
  TORCH_CHECK_VALUE(!shape || other.sizes() == ref.sizes(), name, ": expected the shape of ",
                    ref_name, " ", shape_str(ref.sizes()), ", got ", shape_str(other.sizes()));
  TORCH_CHECK_VALUE(other.scalar_type() == ref.scalar_type(), name, ": expected the dtype of ",
                    ref_name, " (", ref.scalar_type(), "), got ", other.scalar_type());
  check_device(other, name, ref, ref_name);
}

void check_device(const at::Tensor& other, const char* name, const at::Tensor& ref,
                  const char* ref_name) {
  TORCH_CHECK_VALUE(other.device() == ref.device(), name, ": expected the device of ", ref_name,
                    " (", ref.device(), "), got ", other.device());
}

void check_float_dtype(const at::Tensor& tensor, const char* name, const char* what) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                        dtype == at::kBFloat16,
                    name, ": expected float32, float64, float16 or bfloat16", what, ", got ", dtype);
}

void check_nonnegative(double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value >= 0, name,
                    ": expected a finite number >= 0, got ", value);
}

void check_positive(double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value > 0, name, ": expected a finite number > 0, got ",
                    value);
}

at::Tensor plan_weight(const at::Tensor& weight, const at::Tensor& ref, const char* ref_name,
                       const char* row_word, const char* element_word, bool& per_element) {
  TORCH_CHECK_VALUE(weight.is_floating_point(), "weight: expected a floating-point tensor, got ",
                    weight.scalar_type());
  const auto row_shape = ref.sizes().slice(0, ref.dim() - 1);
  per_element = weight.sizes() == ref.sizes();
  TORCH_CHECK_VALUE(per_element || weight.sizes() == row_shape, "weight: expected shape ",
                    shape_str(row_shape), " (per ", row_word, ") or ", shape_str(ref.sizes()),
                    " (per ", element_word, "), got ", shape_str(weight.sizes()));
  check_device(weight, "weight", ref, ref_name);
  return weight.to(ref.scalar_type()).contiguous();
}

at::Tensor plan_avg_factor(const at::Tensor& avg_factor, Reduction reduction, const at::Tensor& ref,
                           const char* ref_name) {
  TORCH_CHECK_VALUE(reduction != Reduction::Sum, "avg_factor: cannot be used with reduction='sum'");
  TORCH_CHECK_VALUE(avg_factor.dim() == 0, "avg_factor: expected a 0-dim tensor, got shape ",
                    shape_str(avg_factor.sizes()));
  TORCH_CHECK_VALUE(avg_factor.is_floating_point(),
                    "avg_factor: expected a floating-point tensor, got ", avg_factor.scalar_type());
  check_device(avg_factor, "avg_factor", ref, ref_name);
  return reduction == Reduction::Mean ? avg_factor.to(at::kDouble).contiguous() : at::Tensor();
}

}  // namespace alwa
