// task_aligned_assign: csrc/cuda/task_aligned_assign_launcher.h over the host runtime.
#include "prelude.h"

#include "cuda/task_aligned_assign_launcher.h"

CUDA_HOST_LIBRARY_IMPL(ALWA_CUDA_HOST_OPS, CPU, m) {
  alwa::cuda::register_task_aligned_assign_launcher<cuda_host::HostRuntime>(m);
}
