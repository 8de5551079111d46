// distribution_focal_loss and its _with_grad form: csrc/cuda/dfl_launcher.h over the host
// runtime.
#include "prelude.h"

#include "cuda/dfl_launcher.h"

CUDA_HOST_LIBRARY_IMPL(ALWA_CUDA_HOST_OPS, CPU, m) {
  alwa::cuda::register_dfl_launchers<cuda_host::HostRuntime>(m);
}
