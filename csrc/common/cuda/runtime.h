// The CUDA runtime as the launchers (cuda/*_launcher.h) use it, in one place: the device
// guard, the device's properties, and a launch on the current stream with its error check.
// The launchers are templates over this Runtime, so the test build of tests/cuda_host/ runs
// them, grids and temporaries and all, over its host stand-in for it. Only the .cu files
// include this header.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <utility>

namespace alwa {
namespace cuda {

struct CudaRuntime {
  using DeviceGuard = c10::cuda::CUDAGuard;

  static int multiprocessors() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }
  static int max_threads_per_multiprocessor() {
    return at::cuda::getCurrentDeviceProperties()->maxThreadsPerMultiProcessor;
  }

  // Every kernel is launched here: on the current stream (so CUDA graphs capture it), with no
  // dynamic shared memory, and checked at once.
  template <class... Params, class... Args>
  static void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args&&... args) {
    kernel<<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(std::forward<Args>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace cuda
}  // namespace alwa
