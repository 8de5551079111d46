// The CUDA kernels of alwa_step and alwa_pooled_update (alwa_update_kernel.cuh), launched by
// alwa_update_launcher.h over the CUDA runtime.
#include <torch/library.h>

#include "cuda/alwa_update_launcher.h"
#include "common/cuda/runtime.h"

TORCH_LIBRARY_IMPL(alwa, CUDA, m) { alwa::cuda::register_alwa_launchers<alwa::cuda::CudaRuntime>(m); }
