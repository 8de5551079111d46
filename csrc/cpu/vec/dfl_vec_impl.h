// The vector distribution_focal_loss driver, written once over the SIMD vectors of simd.h: a
// row's bins across the lanes (W = V::kWidth at a time, the last chunk masked), so a row of up
// to W bins (ultralytics' 16, mmdet's 17 with AVX-512's 16 lanes in two) is one or two
// registers. It mirrors dfl_row (same skipping, weighting, outputs and gradient scaling),
// which stays the definition; the per-bin gradient is alwa/distribution_focal_loss.h's
// dfl_grad on V. Included once per ISA translation unit, after its isa_*.h.
#pragma once

#include <math.h>
#include <stdint.h>

#include "alwa/distribution_focal_loss.h"
#include "cpu/dfl_vec.h"
#include "cpu/vec/exp_log.h"
#include "cpu/vec/simd.h"

namespace alwa {
namespace vec {

alignas(64) constexpr float kBinIndex[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// Chunk c of a row: W bins from c * W, fewer in the last chunk; lanes past the row hold `fill`.
template <class Isa>
inline Vec<Isa> load_bins(const float* row, int64_t first, int64_t n, float fill) {
  const int64_t count = n - first;
  return count >= Isa::kWidth ? Vec<Isa>::load(row + first) : load_partial<Isa>(row + first, static_cast<int>(count), fill);
}
template <class Isa>
inline void store_bins(float* row, int64_t first, int64_t n, Vec<Isa> x) {
  const int64_t count = n - first;
  if (count >= Isa::kWidth) {
    x.store(row + first);
  } else {
    store_partial<Isa>(row + first, x, static_cast<int>(count));
  }
}

template <bool kGrad, class Isa>
double dfl_range(const DflArgs<float, float>& args, int64_t begin, int64_t end, float grad_scale) {
  using V = Vec<Isa>;
  constexpr int W = V::kWidth;
  const int64_t n = args.num_bins;
  const V lane = V::load(kBinIndex);
  double sum = 0.0;
  for (int64_t row = begin; row < end; ++row) {
    const float* x = args.logits + row * n;
    float* grad = kGrad ? args.grad + row * n : nullptr;
    const float w = dfl_row_weight(args, row);
    if (args.weight != nullptr && w == 0.0f) {
      if (args.loss != nullptr) args.loss[row] = 0.0f;
      if constexpr (kGrad) {
        for (int64_t first = 0; first < n; first += W) store_bins<Isa>(grad, first, n, V(0.0f));
      }
      continue;
    }
    const DflBins<float> b = dfl_bins(args.target[row], n);
    // Lanes past the row: -inf for the maximum, so exp gives them 0 for the sum.
    V m_lanes = load_bins<Isa>(x, 0, n, -INFINITY);
    for (int64_t first = W; first < n; first += W) m_lanes = max_(m_lanes, load_bins<Isa>(x, first, n, -INFINITY));
    const float m = reduce_max(m_lanes);
    const V vm(m);
    // One register holds the row's exponentials where it fits; longer rows take them again.
    const V e0 = exp_(load_bins<Isa>(x, 0, n, -INFINITY) - vm);
    V s_lanes = e0;
    for (int64_t first = W; first < n; first += W) s_lanes += exp_(load_bins<Isa>(x, first, n, -INFINITY) - vm);
    const float s = reduce_add(s_lanes);
    const float lse = m + ::logf(s);
    const float x_left = x[b.left];
    const float x_right = b.left + 1 < n ? x[b.left + 1] : x_left;
    const float loss = dfl_value(lse, x_left, x_right, b) * w;
    if (args.loss != nullptr) args.loss[row] = loss;
    sum += static_cast<double>(loss);
    if constexpr (kGrad) {
      const V inv_s(1.0f / s), scale(w * grad_scale), w_left(b.w_left), w_right(b.w_right);
      const V left(static_cast<float>(b.left)), right(static_cast<float>(b.left + 1));
      for (int64_t first = 0; first < n; first += W) {
        const V e = first == 0 ? e0 : exp_(load_bins<Isa>(x, first, n, -INFINITY) - vm);
        const V bin = lane + V(static_cast<float>(first));
        store_bins<Isa>(grad, first, n, dfl_grad(e * inv_s, bin == left, bin == right, w_left, w_right) * scale);
      }
    }
  }
  return sum;
}

// Vectorised: float32 calls with fewer than 2^24 bins (bin numbers are exact floats).
template <class Isa>
cpu::DflVecFn dfl_vec_kernel(const DflArgs<float, float>& args, bool grad) {
  if (args.num_bins >= (int64_t(1) << 24)) return nullptr;
  return grad ? &dfl_range<true, Isa> : &dfl_range<false, Isa>;
}

}  // namespace vec
}  // namespace alwa
