// alwa_step and alwa_pooled_update: csrc/cuda/alwa_update_launcher.h over the host runtime.
#include "prelude.h"

#include "cuda/alwa_update_launcher.h"

CUDA_HOST_LIBRARY_IMPL(ALWA_CUDA_HOST_OPS, CPU, m) {
  alwa::cuda::register_alwa_launchers<cuda_host::HostRuntime>(m);
}
