// The CUDA kernels of task_aligned_assign (task_aligned_assign_kernels.cuh), launched by
// task_aligned_assign_launcher.h over the CUDA runtime.
#include <torch/library.h>

#include "common/cuda/runtime.h"
#include "cuda/task_aligned_assign_launcher.h"

TORCH_LIBRARY_IMPL(alwa, CUDA, m) {
  alwa::cuda::register_task_aligned_assign_launcher<alwa::cuda::CudaRuntime>(m);
}
