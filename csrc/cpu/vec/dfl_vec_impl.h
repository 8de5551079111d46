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

// Rows in groups of W: the maxima and sums of a group first (a row's bins across the lanes,
// reduced), then one vector log and one reciprocal for the whole group (libm's logf a row
// cost more than the rest of the row), then each row's loss and gradient.
template <bool kGrad, class Isa>
double dfl_range(const DflArgs<float, float>& args, int64_t begin, int64_t end, float grad_scale) {
  using V = Vec<Isa>;
  constexpr int W = V::kWidth;
  const int64_t n = args.num_bins;
  const bool one_chunk = n <= W;  // the exponentials of a group's rows then fit in `e`
  const V lane = V::load(kBinIndex);
  alignas(64) float maxima[W], sums[W], lse[W], inv_sums[W];
  alignas(64) float e[W][W];
  bool skipped[W];
  double sum = 0.0;
  for (int64_t first_row = begin; first_row < end; first_row += W) {
    const int rows = static_cast<int>(end - first_row < W ? end - first_row : W);
    for (int r = 0; r < W; ++r) {
      const int64_t row = first_row + r;
      skipped[r] = r >= rows || (args.weight != nullptr && dfl_row_weight(args, row) == 0.0f);
      maxima[r] = 0.0f;
      sums[r] = 1.0f;
      if (skipped[r]) continue;
      const float* x = args.logits + row * n;
      // Lanes past the row: -inf for the maximum, so exp gives them 0 for the sum.
      V m_lanes = load_bins<Isa>(x, 0, n, -INFINITY);
      for (int64_t bin = W; bin < n; bin += W) m_lanes = max_(m_lanes, load_bins<Isa>(x, bin, n, -INFINITY));
      const float m = reduce_max(m_lanes);
      const V vm(m);
      const V e0 = exp_(load_bins<Isa>(x, 0, n, -INFINITY) - vm);
      if (one_chunk) e0.store(e[r]);
      V s_lanes = e0;
      for (int64_t bin = W; bin < n; bin += W) s_lanes += exp_(load_bins<Isa>(x, bin, n, -INFINITY) - vm);
      maxima[r] = m;
      sums[r] = reduce_add(s_lanes);
    }
    const V s = V::load(sums);
    (V::load(maxima) + log_(s)).store(lse);
    (V(1.0f) / s).store(inv_sums);
    for (int r = 0; r < rows; ++r) {
      const int64_t row = first_row + r;
      float* grad = kGrad ? args.grad + row * n : nullptr;
      if (skipped[r]) {
        if (args.loss != nullptr) args.loss[row] = 0.0f;
        if constexpr (kGrad) {
          for (int64_t bin = 0; bin < n; bin += W) store_bins<Isa>(grad, bin, n, V(0.0f));
        }
        continue;
      }
      const float* x = args.logits + row * n;
      const float w = dfl_row_weight(args, row);
      const DflBins<float> b = dfl_bins(args.target[row], n);
      const float x_left = x[b.left];
      const float x_right = b.left + 1 < n ? x[b.left + 1] : x_left;
      const float loss = dfl_value(lse[r], x_left, x_right, b) * w;
      if (args.loss != nullptr) args.loss[row] = loss;
      sum += static_cast<double>(loss);
      if constexpr (kGrad) {
        const V inv_s(inv_sums[r]), scale(w * grad_scale), w_left(b.w_left), w_right(b.w_right);
        const V left(static_cast<float>(b.left)), right(static_cast<float>(b.left + 1));
        const V vm(maxima[r]);
        for (int64_t bin = 0; bin < n; bin += W) {
          const V eb = one_chunk ? V::load(e[r]) : exp_(load_bins<Isa>(x, bin, n, -INFINITY) - vm);
          const V index = lane + V(static_cast<float>(bin));
          store_bins<Isa>(grad, bin, n, dfl_grad(eb * inv_s, index == left, index == right, w_left, w_right) * scale);
        }
      }
    }
  }
  return sum;
}

// Rows of at most kMaxLaneBins bins: W rows at a time across the lanes, their bins as vectors
// (W x W blocks transposed in and out), so the maximum, the sum, the log and the loss of W rows
// are vector operations with no reduction across lanes. Returns the number of rows done (whole
// groups of W; the caller takes the rest row by row).
constexpr int64_t kMaxLaneBins = 32;

template <bool kGrad, class Isa>
int64_t dfl_rows_in_lanes(const DflArgs<float, float>& args, int64_t begin, int64_t end, float grad_scale,
                          DoubleSum<Isa>& sum) {
  using V = Vec<Isa>;
  constexpr int W = V::kWidth;
  const int64_t n = args.num_bins;
  const int chunks = static_cast<int>((n + W - 1) / W);
  const V last_bin(static_cast<float>(n - 1));
  int64_t first_row = begin;
  for (; first_row + W <= end; first_row += W) {
    // x[b]: bin b of the group's W rows; past the last bin, -inf (exp gives 0).
    V x[kMaxLaneBins + W];
    for (int c = 0; c < chunks; ++c) {
      V block[W];
      for (int r = 0; r < W; ++r) block[r] = load_bins<Isa>(args.logits + (first_row + r) * n, c * W, n, -INFINITY);
      transpose(block);
      for (int k = 0; k < W; ++k) x[c * W + k] = block[k];
    }
    const V t = V::load(args.target + first_row);
    const V w = args.weight != nullptr ? V::load(args.weight + first_row) : V(1.0f);
    const auto skipped = w == V(0.0f);  // (never with no weight)
    // dfl_bins across lanes: l = floor(t), kept at n - 1 for t = n - 1 with all the weight; a
    // NaN target matches no bin and carries NaN in its weights.
    const V left = min_(floor_(t), last_bin);
    const V right = left + V(1.0f);
    const auto at_end = left == last_bin;
    const V w_left = select(at_end, V(1.0f), right - t);
    const V w_right = select(at_end, V(0.0f), t - left);
    V m = x[0];
    for (int64_t b = 1; b < n; ++b) m = max_(m, x[b]);
    V s(0.0f), x_left(0.0f), x_right(0.0f);
    for (int64_t b = 0; b < n; ++b) {
      const V bin(static_cast<float>(b));
      x_left = select(bin == left, x[b], x_left);
      x_right = select(bin == right, x[b], x_right);
      x[b] = exp_(x[b] - m);
      s += x[b];
    }
    const V lse = m + log_(s);
    const V loss = select(skipped, V(0.0f), dfl_value(lse, x_left, x_right, w_left, w_right) * w);
    if (args.loss != nullptr) loss.store(args.loss + first_row);
    sum.add(loss);
    if constexpr (kGrad) {
      const V inv_s = V(1.0f) / s, scale = w * V(grad_scale);
      for (int c = 0; c < chunks; ++c) {
        V block[W];
        for (int k = 0; k < W; ++k) {
          const V bin(static_cast<float>(c * W + k));
          const V g = dfl_grad(x[c * W + k] * inv_s, bin == left, bin == right, w_left, w_right);
          block[k] = select(skipped, V(0.0f), g * scale);
        }
        transpose(block);
        for (int r = 0; r < W; ++r) store_bins<Isa>(args.grad + (first_row + r) * n, c * W, n, block[r]);
      }
    }
  }
  return first_row - begin;
}

template <bool kGrad, class Isa>
double dfl_range_lanes_then_rows(const DflArgs<float, float>& args, int64_t begin, int64_t end, float grad_scale) {
  DoubleSum<Isa> sum;
  const int64_t done = dfl_rows_in_lanes<kGrad, Isa>(args, begin, end, grad_scale, sum);
  return sum.total() + dfl_range<kGrad, Isa>(args, begin + done, end, grad_scale);
}

// Vectorised: float32 calls with fewer than 2^24 bins (bin numbers are exact floats); up to
// kMaxLaneBins bins with the rows across the lanes, more with each row's bins across them.
template <class Isa>
cpu::DflVecFn dfl_vec_kernel(const DflArgs<float, float>& args, bool grad) {
  if (args.num_bins >= (int64_t(1) << 24)) return nullptr;
  if (args.num_bins <= kMaxLaneBins) {
    return grad ? &dfl_range_lanes_then_rows<true, Isa> : &dfl_range_lanes_then_rows<false, Isa>;
  }
  return grad ? &dfl_range<true, Isa> : &dfl_range<false, Isa>;
}

// distribution_expectation, W rows across the lanes as dfl_rows_in_lanes takes them: the
// moments of dfl_integral_moments without a reduction across lanes; the rows past the last
// whole group one at a time.
template <bool kBackward, class Isa>
void dfl_integral_range(const DflIntegralArgs<float, float>& args, int64_t begin, int64_t end) {
  using V = Vec<Isa>;
  constexpr int W = V::kWidth;
  const int64_t n = args.num_bins;
  const int chunks = static_cast<int>((n + W - 1) / W);
  int64_t first_row = begin;
  for (; first_row + W <= end; first_row += W) {
    V x[kMaxLaneBins + W];
    for (int c = 0; c < chunks; ++c) {
      V block[W];
      for (int r = 0; r < W; ++r) block[r] = load_bins<Isa>(args.logits + (first_row + r) * n, c * W, n, -INFINITY);
      transpose(block);
      for (int k = 0; k < W; ++k) x[c * W + k] = block[k];
    }
    V m = x[0];
    for (int64_t b = 1; b < n; ++b) m = max_(m, x[b]);
    V s(0.0f), first(0.0f);
    for (int64_t b = 0; b < n; ++b) {
      x[b] = exp_(x[b] - m);
      s += x[b];
      first += V(static_cast<float>(b)) * x[b];
    }
    const V inv_s = V(1.0f) / s;
    const V mean = first * inv_s;
    if constexpr (!kBackward) {
      mean.store(args.out + first_row);
    } else {
      const V g = V::load(args.grad_in + first_row) * inv_s;
      for (int c = 0; c < chunks; ++c) {
        V block[W];
        for (int k = 0; k < W; ++k) block[k] = g * x[c * W + k] * (V(static_cast<float>(c * W + k)) - mean);
        transpose(block);
        for (int r = 0; r < W; ++r) store_bins<Isa>(args.out + (first_row + r) * n, c * W, n, block[r]);
      }
    }
  }
  for (int64_t row = first_row; row < end; ++row) {
    if constexpr (kBackward) {
      dfl_integral_backward_row(args, row);
    } else {
      dfl_integral_row(args, row);
    }
  }
}

template <class Isa>
cpu::DflIntegralVecFn dfl_integral_vec_kernel(const DflIntegralArgs<float, float>& args) {
  if (args.num_bins > kMaxLaneBins) return nullptr;
  return args.grad_in != nullptr ? &dfl_integral_range<true, Isa> : &dfl_integral_range<false, Isa>;
}

}  // namespace vec
}  // namespace alwa
