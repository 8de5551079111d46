// The CUDA kernels of box_loss, box_iou and box_iou_backward (box_loss_kernels.cuh), launched
// by box_loss_launcher.h over the CUDA runtime.
#include <torch/library.h>

#include "cuda/box_loss_launcher.h"
#include "common/cuda/runtime.h"

TORCH_LIBRARY_IMPL(alwa, CUDA, m) { alwa::cuda::register_box_launchers<alwa::cuda::CudaRuntime>(m); }
