// The vector sigmoid_focal_loss driver, written once over the SIMD vectors of simd.h: W =
// V::kWidth elements at a time, the per-element math instantiated from alwa/focal_loss.h on
// V = Vec<Isa>. It mirrors focal_loss_element (same weighting, outputs and gradient scaling),
// which stays the definition. Included once per ISA translation unit, after its isa_*.h.
#pragma once

#include <stdint.h>

#include <type_traits>

#include "alwa/focal_loss.h"
#include "cpu/focal_loss_vec.h"
#include "cpu/vec/exp_log.h"
#include "cpu/vec/simd.h"

namespace alwa {
namespace vec {

alignas(64) constexpr float kLaneIndex[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// Elements [begin, end) of the flat (rows, classes) logits. A group of W elements starting at
// column `col` of row `row` spans that row and, where col + W > classes, the next one (the path
// needs classes >= W, so never a third): lanes from `split` = classes - col on belong to row + 1.
// The last n < W elements of the range go through focal_loss_element.
template <bool kGrad, FocalGamma kGamma, bool kHard, class V, class Sum>
double focal_loss_range(const FocalLossArgs<float, float>& args, int64_t begin, int64_t end,
                        float grad_scale) {
  constexpr int W = V::kWidth;
  const int64_t classes = args.num_classes;
  const FocalParams<V> params{V(args.params.alpha_pos), V(args.params.alpha_neg), V(args.params.gamma)};
  const V lane = V::load(kLaneIndex);
  const bool per_row_weight = args.weight != nullptr && !args.weight_per_element;
  // The lane of this group where a row's positive element is, given the lane of the row's
  // column 0 (-1: in no lane; lanes hold small integers, exact in float).
  const auto positive_lane = [&](int64_t label, int64_t first_lane) {
    const int64_t k = first_lane + label;
    return label < classes && k >= 0 && k < W ? static_cast<float>(k) : -1.0f;
  };
  int64_t row = begin / classes, col = begin % classes;
  Sum sum;
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    const int64_t split = classes - col;
    const bool two_rows = split < W;
    const V x = V::load(args.logits + i);
    V grad(0.0f), loss;
    if constexpr (kHard) {
      V target(positive_lane(args.labels[row], -col));
      if (two_rows) {
        target = select(lane > V(static_cast<float>(split) - 0.5f), V(positive_lane(args.labels[row + 1], split)),
                        target);
      }
      loss = focal_loss_hard<kGrad, kGamma>(x, lane == target, params, grad);
    } else {
      loss = focal_loss_soft<kGrad, kGamma>(x, V::load(args.soft_targets + i), params, grad);
    }
    if (args.weight != nullptr) {
      V w;
      if (per_row_weight) {
        w = V(args.weight[row]);
        if (two_rows) w = select(lane > V(static_cast<float>(split) - 0.5f), V(args.weight[row + 1]), w);
      } else {
        w = V::load(args.weight + i);
      }
      loss = loss * w;
      grad = grad * w;
    }
    if (args.loss != nullptr) loss.store(args.loss + i);
    if constexpr (kGrad) (grad * V(grad_scale)).store(args.grad + i);
    sum.add(loss);
    col += W;
    if (col >= classes) {
      col -= classes;
      ++row;
    }
  }
  double tail = 0.0;
  for (; i < end; ++i) {
    tail += static_cast<double>(focal_loss_element<kGrad, kGamma>(args, row, col, grad_scale));
    if (++col == classes) {
      col = 0;
      ++row;
    }
  }
  return sum.total() + tail;
}

// Vectorised: float32 calls with at least W classes (and fewer than 2^24, so class numbers are
// exact floats); others return nullptr and run through the scalar loop.
template <class Isa>
cpu::FocalLossVecFn focal_loss_vec_kernel(const FocalLossArgs<float, float>& args, bool grad, FocalGamma gamma) {
  using V = Vec<Isa>;
  using Sum = DoubleSum<Isa>;
  if (args.num_classes < V::kWidth || args.num_classes >= (int64_t(1) << 24)) return nullptr;
  const bool hard = args.labels != nullptr;
  // Every (grad, gamma form, hard) combination, instantiated once each.
  cpu::FocalLossVecFn fn = nullptr;
  const auto pick = [&](auto grad_tag, auto gamma_tag, auto hard_tag) {
    if (grad == decltype(grad_tag)::value && gamma == decltype(gamma_tag)::value && hard == decltype(hard_tag)::value) {
      fn = &focal_loss_range<decltype(grad_tag)::value, decltype(gamma_tag)::value, decltype(hard_tag)::value, V, Sum>;
    }
  };
  const auto for_hard = [&](auto grad_tag, auto gamma_tag) {
    pick(grad_tag, gamma_tag, std::true_type{});
    pick(grad_tag, gamma_tag, std::false_type{});
  };
  const auto for_gamma = [&](auto grad_tag) {
    for_hard(grad_tag, std::integral_constant<FocalGamma, FocalGamma::Two>{});
    for_hard(grad_tag, std::integral_constant<FocalGamma, FocalGamma::Zero>{});
    for_hard(grad_tag, std::integral_constant<FocalGamma, FocalGamma::General>{});
  };
  for_gamma(std::true_type{});
  for_gamma(std::false_type{});
  return fn;
}

}  // namespace vec
}  // namespace alwa
