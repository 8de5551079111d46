// One ISA's vector atan2 (csrc/cpu/vec/atan2.h, the one CIoU calls) over n floats, for the
// accuracy test. Included by atan2_avx2.cpp / atan2_avx512.cpp inside their target switch,
// with ATAN2_UNIT_ISA (an ISA struct of csrc/cpu/vec/isa_*.h) and ATAN2_UNIT_NAME defined.
#include <string.h>

#include "cpu/vec/atan2.h"
#include "cpu/vec/simd.h"

namespace alwa_vec_test {

bool ATAN2_UNIT_NAME(const float* y, const float* x, float* out, int64_t n) {
  using V = alwa::vec::Vec<alwa::vec::ATAN2_UNIT_ISA>;
  constexpr int W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) atan2_(V::load(y + i), V::load(x + i)).store(out + i);
  if (i < n) {  // the tail, padded with atan2(0, 1)
    alignas(64) float ys[W], xs[W], rs[W];
    const int rest = static_cast<int>(n - i);
    for (int j = 0; j < W; ++j) {
      ys[j] = j < rest ? y[i + j] : 0.0f;
      xs[j] = j < rest ? x[i + j] : 1.0f;
    }
    atan2_(V::load(ys), V::load(xs)).store(rs);
    memcpy(out + i, rs, sizeof(float) * rest);
  }
  return true;
}

}  // namespace alwa_vec_test
