// torch.ops.alwa_vec_test.atan2(y, x, isa): the SIMD paths' atan2 on float32 tensors, a test
// hook kept out of the product's build (tests/cpu_vec/build.py builds this library).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

namespace alwa_vec_test {

bool atan2_avx2(const float* y, const float* x, float* out, int64_t n);
bool atan2_avx512(const float* y, const float* x, float* out, int64_t n);

at::Tensor atan2_op(const at::Tensor& y, const at::Tensor& x, const std::string& isa) {
  TORCH_CHECK_VALUE(y.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat &&
                        y.sizes() == x.sizes(),
                    "atan2: expected two float32 tensors of one shape");
  TORCH_CHECK_VALUE(isa == "avx2" || isa == "avx512", "atan2: isa: expected 'avx2' or 'avx512'");
  const at::Tensor y_c = y.contiguous(), x_c = x.contiguous();
  at::Tensor out = at::empty_like(y_c);
  const auto fn = isa == "avx2" ? &atan2_avx2 : &atan2_avx512;
  TORCH_CHECK(fn(y_c.const_data_ptr<float>(), x_c.const_data_ptr<float>(),
                 out.mutable_data_ptr<float>(), y_c.numel()),
              "atan2: this build has no ", isa, " path");
  return out;
}

}  // namespace alwa_vec_test

TORCH_LIBRARY(alwa_vec_test, m) { m.def("atan2(Tensor y, Tensor x, str isa) -> Tensor"); }
TORCH_LIBRARY_IMPL(alwa_vec_test, CPU, m) { m.impl("atan2", &alwa_vec_test::atan2_op); }
