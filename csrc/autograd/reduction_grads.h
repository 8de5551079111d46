// The gradients every loss op's autograd takes through the reduction (common/reduction.h),
// written once: w.r.t. the weight (the unweighted element losses times the upstream gradient
// of each element) and w.r.t. avg_factor.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "common/reduction.h"

namespace alwa {

// d loss / d weight per element loss: `unweighted` (the element losses without the weight)
// times each element's upstream gradient, grad_loss through the reduction: itself for "none"
// and "sum"; for "mean", divided by the element count or by (avg_factor + kAvgFactorEps).
// (The count is read only where it is used: under torch.compile's dynamic shapes it is
// symbolic.)
inline at::Tensor weight_grad(const at::Tensor& unweighted, const at::Tensor& grad_loss,
                              Reduction reduction, const at::Tensor& avg_factor) {
  if (reduction != Reduction::Mean) return unweighted * grad_loss;
  if (avg_factor.defined()) return unweighted * (grad_loss / (avg_factor + kAvgFactorEps));
  return unweighted * (grad_loss / static_cast<double>(std::max<int64_t>(unweighted.numel(), 1)));
}

// d loss / d avg_factor of a "mean" loss = sum / (avg_factor + eps): -loss / (avg_factor + eps).
inline at::Tensor avg_factor_grad(const at::Tensor& grad_loss, const at::Tensor& loss,
                                  const at::Tensor& avg_factor) {
  return (-grad_loss * loss / (avg_factor + kAvgFactorEps)).to(avg_factor.scalar_type());
}

}  // namespace alwa
