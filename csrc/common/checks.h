// The argument checks every op's plan makes (box_loss_plan.cpp, focal_loss_plan.cpp,
// alwa_update_checks.cpp), written once: each names the argument, the way the user wrote it.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstddef>
#include <string>

#include "common/reduction.h"

namespace alwa {

// A shape as Python prints it, (5,) or (2, 4).
std::string shape_str(at::IntArrayRef shape);

// "'a', 'b', 'c'": the choices of an error message.
std::string quoted_choices(const char* const* names, size_t count);

// The index of `value` in names[0..count), or an error "arg: expected one of ..., got '...'".
// The one place a name a user passed is compared with the names of a table.
int parse_choice(const char* arg, const std::string& value, const char* const* names, size_t count);

template <class Enum, size_t N>
Enum parse_enum(const char* arg, const std::string& value, const char* const (&names)[N]) {
  return static_cast<Enum>(parse_choice(arg, value, names, N));
}

inline Reduction parse_reduction(const std::string& name) {
  return parse_enum<Reduction>("reduction", name, kReductionNames);
}

// A table's names as std::strings, for the autograd, which passes names on to the ops below
// it: each table's function keeps them in a static, so a call copies no string.
template <size_t N>
std::array<std::string, N> name_strings(const char* const (&names)[N]) {
  std::array<std::string, N> out;
  for (size_t i = 0; i < N; ++i) out[i] = names[i];
  return out;
}
inline const std::string& reduction_name(Reduction reduction) {
  static const auto names = name_strings(kReductionNames);
  return names[static_cast<int>(reduction)];
}

// `other` has the shape (optionally), dtype and device of `ref`.
void check_like(const at::Tensor& other, const char* name, const at::Tensor& ref,
                const char* ref_name, bool shape = true);
void check_device(const at::Tensor& other, const char* name, const at::Tensor& ref,
                  const char* ref_name);
// float32, float64, float16 or bfloat16; `what` names the tensor in the message ("boxes").
void check_float_dtype(const at::Tensor& tensor, const char* name, const char* what);
void check_nonnegative(double value, const char* name);
void check_positive(double value, const char* name);

// A weight per row (ref's shape without its last dim: per box, per anchor) or per element
// (ref's shape), checked (floating, one of the two shapes, ref's device; the messages name
// `row_word` and `element_word`), returned in ref's dtype and contiguous; sets per_element.
at::Tensor plan_weight(const at::Tensor& weight, const at::Tensor& ref, const char* ref_name,
                       const char* row_word, const char* element_word, bool& per_element);
// avg_factor: a floating 0-dim tensor on ref's device, an error with "sum"; returned as float64
// for "mean", undefined for "none" (which ignores it, as mmdet's weight_reduce_loss does).
at::Tensor plan_avg_factor(const at::Tensor& avg_factor, Reduction reduction, const at::Tensor& ref,
                           const char* ref_name);

}  // namespace alwa
