// CPU kernels of box_loss, box_loss_backward, box_iou and box_iou_backward. One pass over the
// boxes computes the loss, applies the weight, reduces and (when asked) writes the gradients;
// box_loss_backward is the same pass writing the vector-Jacobian products instead. The math is
// in alwa/box_math.h; float32 goes through the SIMD path of this CPU where it has one.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "box_loss_plan.h"
#include "common/cpu/block_sum.h"
#include "cpu/cpu_isa.h"

namespace alwa {
namespace {

// The block of the deterministic sum (cpu/block_sum.h).
constexpr int64_t kBoxesPerBlock = 2048;

template <typename scalar_t, LossKind K, bool kGrad>
void box_loss_cpu_typed(const BoxLossPlan& plan) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto args = make_box_loss_args<scalar_t, acc_t>(plan);
  const acc_t grad_scale = gradient_scale(args);
  // float32 goes through the SIMD path of this CPU where it vectorises the kind and format
  // (cpu_isa.h); other dtypes, kinds and formats, and ALWA_CPU_ISA=scalar, through the loop.
  cpu::BoxLossVecFn vec_fn = nullptr;
  if constexpr (std::is_same_v<scalar_t, float>) {
    vec_fn = cpu::box_loss_vec_fn(K, args, kGrad);
  }
  const bool reduce = plan.loss.defined() && plan.reduction != Reduction::None;
  const double total = cpu::block_sum(plan.num_boxes, kBoxesPerBlock, reduce, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (vec_fn != nullptr) return vec_fn(args, begin, end, grad_scale);
    }
    double sum = 0.0;
    for (int64_t i = begin; i < end; ++i) sum += static_cast<double>(box_loss_element<K, kGrad>(args, i, grad_scale));
    return sum;
  });
  if (reduce) cpu::store_reduced(plan.loss.mutable_data_ptr<scalar_t>(), total, plan.scale, args.avg_factor);
}

void run_box_loss_cpu(BoxLossPlan& plan) {
  if (plan.num_boxes == 0) {
    if (plan.loss.defined() && plan.reduction != Reduction::None) plan.loss.zero_();
    return;  // (the gradients of an empty call have no elements)
  }
  const bool with_grad = plan.grad_pred || plan.grad_target;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.pred.scalar_type(), "box_loss_cpu", [&] {
    dispatch_loss_kind(plan.kind, [&](auto kind) {
      constexpr LossKind K = decltype(kind)::value;
      if (with_grad) {
        box_loss_cpu_typed<scalar_t, K, true>(plan);
      } else {
        box_loss_cpu_typed<scalar_t, K, false>(plan);
      }
    });
  });
}

using BoxLossCpu = BoxLossOps<run_box_loss_cpu>;

at::Tensor box_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, const std::string& kind,
                       const std::string& box_format, double eps) {
  const BoxIouPlan plan = plan_box_iou(boxes1, boxes2, kind, box_format, eps);
  if (plan.m == 0 || plan.n == 0) return plan.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.boxes1.scalar_type(), "box_iou_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* b1_ptr = plan.boxes1.const_data_ptr<scalar_t>();
    const scalar_t* b2_ptr = plan.boxes2.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = plan.out.mutable_data_ptr<scalar_t>();
    const acc_t eps_t = static_cast<acc_t>(eps);
    dispatch_iou_kind(plan.kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      at::parallel_for(0, plan.m, std::max<int64_t>(1, 4096 / plan.n), [&](int64_t row_begin, int64_t row_end) {
        for (int64_t i = row_begin; i < row_end; ++i) {
          acc_t a[4];
          load_box(b1_ptr + 4 * i, a);
          for (int64_t j = 0; j < plan.n; ++j) {
            acc_t b[4];
            load_box(b2_ptr + 4 * j, b);
            out_ptr[i * plan.n + j] = static_cast<scalar_t>(iou_value<K>(a, b, plan.format, eps_t));
          }
        }
      });
    });
  });
  return plan.out;
}

// d out[i, j] / d boxes: each row of boxes1 and each column of boxes2 sums its own pairs in a
// fixed order (no shared accumulators, so the result is deterministic).
std::tuple<at::Tensor, at::Tensor> box_iou_backward_cpu(
    const at::Tensor& grad, const at::Tensor& boxes1, const at::Tensor& boxes2,
    const std::string& kind, const std::string& box_format, double eps, bool grad_boxes1,
    bool grad_boxes2) {
  const LossKind loss_kind = check_box_iou_args(boxes1, boxes2, kind, box_format, eps);
  check_box_iou_grad(grad, boxes1, boxes2);
  const BoxFormat format = parse_iou_box_format(box_format);
  const int64_t m = boxes1.size(0), n = boxes2.size(0);
  at::Tensor grad1 = grad_boxes1 ? at::zeros_like(boxes1, at::MemoryFormat::Contiguous)
                                 : at::empty({0}, boxes1.options());
  at::Tensor grad2 = grad_boxes2 ? at::zeros_like(boxes2, at::MemoryFormat::Contiguous)
                                 : at::empty({0}, boxes2.options());
  if (m == 0 || n == 0) return {grad1, grad2};
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const at::Tensor g = grad.to(boxes1.scalar_type()).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "box_iou_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* b1_ptr = b1.const_data_ptr<scalar_t>();
    const scalar_t* b2_ptr = b2.const_data_ptr<scalar_t>();
    const scalar_t* g_ptr = g.const_data_ptr<scalar_t>();
    const auto params = plain_iou_params(static_cast<acc_t>(eps));
    dispatch_iou_kind(loss_kind, [&](auto kind_constant) {
      constexpr LossKind K = decltype(kind_constant)::value;
      const int64_t grain = std::max<int64_t>(1, 4096 / std::max(m, n));
      // Box `own` of `owners` summed over its pairs with every box of `others`; value = 1 - loss.
      auto sum_over_pairs = [&](const scalar_t* owners, const scalar_t* others, int64_t count,
                                int64_t other_count, bool owner_is_first, scalar_t* out) {
        at::parallel_for(0, count, grain, [&](int64_t begin, int64_t end) {
          for (int64_t own = begin; own < end; ++own) {
            acc_t a[4], acc[4] = {0, 0, 0, 0};
            load_box(owners + 4 * own, a);
            for (int64_t other = 0; other < other_count; ++other) {
              acc_t b[4], grad_first[4], grad_second[4];
              load_box(others + 4 * other, b);
              const int64_t i = owner_is_first ? own : other, j = owner_is_first ? other : own;
              if (owner_is_first) {
                iou_loss<K, true>(a, b, format, params, grad_first, grad_second);
              } else {
                iou_loss<K, true>(b, a, format, params, grad_first, grad_second);
              }
              const acc_t go = static_cast<acc_t>(g_ptr[i * n + j]);
              const acc_t(&mine)[4] = owner_is_first ? grad_first : grad_second;
              for (int k = 0; k < 4; ++k) acc[k] -= go * mine[k];
            }
            for (int k = 0; k < 4; ++k) out[4 * own + k] = saturating_cast<scalar_t>(acc[k]);
          }
        });
      };
      if (grad_boxes1) sum_over_pairs(b1_ptr, b2_ptr, m, n, true, grad1.mutable_data_ptr<scalar_t>());
      if (grad_boxes2) sum_over_pairs(b2_ptr, b1_ptr, n, m, false, grad2.mutable_data_ptr<scalar_t>());
    });
  });
  return {grad1, grad2};
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CPU, m) { register_box_ops<BoxLossCpu>(m, &box_iou_cpu, &box_iou_backward_cpu); }

}  // namespace alwa
