// The CUDA kernel of distribution_focal_loss (dfl_kernels.cuh), launched by dfl_launcher.h over
// the CUDA runtime.
#include <torch/library.h>

#include "common/cuda/runtime.h"
#include "cuda/dfl_launcher.h"

TORCH_LIBRARY_IMPL(alwa, CUDA, m) { alwa::cuda::register_dfl_launchers<alwa::cuda::CudaRuntime>(m); }
