// The CPU kernels' deterministic reduction: fixed blocks of items, summed block by block in
// parallel, then over the blocks in order, so a sum does not depend on the number of threads.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>  // at::internal::GRAIN_SIZE

#include <algorithm>
#include <vector>

#include "common/reduction.h"

namespace alwa {
namespace cpu {

// Runs block_fn(begin, end) -> double over [0, num_items) in blocks of `per_block`, and returns
// the sum of their results in block order (0 without `reduce`, whose results are dropped).
// A thread takes at least torch's grain of items: below it, waking threads costs more than the
// work (and on shared cores a late thread stalls the call). The blocks, and so the sum, stay
// the same whatever the grain and thread count.
template <class BlockFn>
double block_sum(int64_t num_items, int64_t per_block, bool reduce, const BlockFn& block_fn) {
  const int64_t num_blocks = (num_items + per_block - 1) / per_block;
  std::vector<double> sums(reduce ? num_blocks : 0, 0.0);
  const int64_t grain_blocks = std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_block);
  at::parallel_for(0, num_blocks, grain_blocks, [&](int64_t first_block, int64_t last_block) {
    for (int64_t block = first_block; block < last_block; ++block) {
      const int64_t begin = block * per_block;
      const double sum = block_fn(begin, std::min(num_items, begin + per_block));
      if (reduce) sums[block] = sum;
    }
  });
  double total = 0.0;
  for (double s : sums) total += s;
  return total;
}

// Writes the reduced loss of a block_sum total (common/reduction.h's rule). A reduced loss is
// never saturated: one beyond float16's range is inf, as torch's is.
template <class scalar_t>
void store_reduced(scalar_t* out, double total, double count_scale, const double* avg_factor) {
  *out = static_cast<scalar_t>(reduce_total(total, count_scale, avg_factor));
}

}  // namespace cpu
}  // namespace alwa
