// task_aligned_assign has no gradient (an assignment, as ultralytics' assigner runs under
// torch.no_grad): at the Autograd key it runs the backend's kernel below autograd, so inputs
// that require a gradient (undetached predictions) give outputs that do not, instead of a graph
// whose backward would raise.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "autograd/function_helpers.h"
#include "task_aligned_assign_plan.h"

namespace alwa {
namespace {

using TalFn = TalOutputs(ALWA_TAL_PARAMS);

TalOutputs task_aligned_assign_autograd(ALWA_TAL_PARAMS) {
  static auto op = find_op<TalFn>("alwa::task_aligned_assign");
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(ALWA_TAL_ARGS);
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, Autograd, m) { m.impl("task_aligned_assign", &task_aligned_assign_autograd); }

}  // namespace alwa
