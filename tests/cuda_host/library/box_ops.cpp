// box_loss (all three forms), box_iou and box_iou_backward: csrc/cuda/box_loss_launcher.h over
// the host runtime.
#include "prelude.h"

#include "cuda/box_loss_launcher.h"

CUDA_HOST_LIBRARY_IMPL(ALWA_CUDA_HOST_OPS, CPU, m) {
  alwa::cuda::register_box_launchers<cuda_host::HostRuntime>(m);
}
