// The CUDA kernels of sigmoid_focal_loss (focal_loss_kernels.cuh), launched by
// focal_loss_launcher.h over the CUDA runtime.
#include <torch/library.h>

#include "cuda/focal_loss_launcher.h"
#include "common/cuda/runtime.h"

TORCH_LIBRARY_IMPL(alwa, CUDA, m) {
  alwa::cuda::register_focal_loss_launchers<alwa::cuda::CudaRuntime>(m);
}
