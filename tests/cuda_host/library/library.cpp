// The op library of the host execution: the schemas of torch.ops.alwa's kernel ops (one
// definition, csrc/kernel_schemas.h) in its own namespace, implemented at the CPU key by the
// CUDA launchers and kernels run on the host (box_ops.cpp, focal_ops.cpp, alwa_ops.cpp), and
// the controls of the emulated device that the tests set and read.
#include <string>
#include <tuple>
#include <vector>

#include "prelude.h"

namespace {

// Sets the stand-in device's multiprocessor count and threads per multiprocessor (what the
// launchers size their grids from); returns the previous pair.
std::vector<int64_t> set_device_properties(int64_t multiprocessors, int64_t max_threads_per_multiprocessor) {
  TORCH_CHECK_VALUE(multiprocessors >= 1 && max_threads_per_multiprocessor >= 256 &&
                        max_threads_per_multiprocessor % 256 == 0,
                    "set_device_properties: expected multiprocessors >= 1 and threads a multiple of 256");
  auto& properties = cuda_host::device_properties();
  std::vector<int64_t> previous = {properties.multiprocessors, properties.max_threads_per_multiprocessor};
  properties.multiprocessors = static_cast<int>(multiprocessors);
  properties.max_threads_per_multiprocessor = static_cast<int>(max_threads_per_multiprocessor);
  return previous;
}

// "forward" or "reverse" (emulator.h's Schedule); returns the previous one.
std::string set_schedule(const std::string& order) {
  auto& schedule = cuda_host::schedule();
  const std::string previous = schedule == cuda_host::Schedule::Forward ? "forward" : "reverse";
  if (order == "forward") {
    schedule = cuda_host::Schedule::Forward;
  } else if (order == "reverse") {
    schedule = cuda_host::Schedule::Reverse;
  } else {
    TORCH_CHECK_VALUE(false, "set_schedule: expected 'forward' or 'reverse', got '", order, "'");
  }
  return previous;
}

// The launches since the last call: the kernels' names and, six numbers a launch, the grid's and
// the block's x, y, z.
std::tuple<std::vector<std::string>, std::vector<int64_t>> take_launches() {
  auto& log = cuda_host::launch_log();
  std::vector<std::string> kernels;
  std::vector<int64_t> geometry;
  for (const auto& launch : log) {
    kernels.push_back(launch.kernel);
    for (const dim3& d : {launch.grid, launch.block}) geometry.insert(geometry.end(), {d.x, d.y, d.z});
  }
  log.clear();
  return {kernels, geometry};
}

}  // namespace

CUDA_HOST_LIBRARY(ALWA_CUDA_HOST_OPS, m) {
  alwa::define_kernel_ops(m);
  m.def("set_device_properties(int multiprocessors, int max_threads_per_multiprocessor) -> int[]",
        &set_device_properties);
  m.def("set_schedule(str order) -> str", &set_schedule);
  m.def("take_launches() -> (str[], int[])", &take_launches);
}
