// What the argument checks of every op share (box_loss_plan.cpp, alwa_update_checks.cpp).
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace alwa {

// A shape as Python prints it, (5,) or (2, 4): error messages name shapes the way the user
// wrote them.
std::string shape_str(at::IntArrayRef shape);

}  // namespace alwa
