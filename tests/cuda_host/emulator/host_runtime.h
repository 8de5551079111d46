// The Runtime (csrc/cuda/runtime.h's interface) of the host execution: the launchers of
// csrc/cuda/ run over it unchanged, and every launch runs on emulator.h's threads.
#pragma once

#include <tuple>
#include <type_traits>
#include <utility>

#include "emulator.h"

namespace cuda_host {

struct HostRuntime {
  // One device, so nothing to guard.
  struct DeviceGuard {
    template <class Device>
    explicit DeviceGuard(const Device&) {}
  };

  static int multiprocessors() { return device_properties().multiprocessors; }
  static int max_threads_per_multiprocessor() {
    return device_properties().max_threads_per_multiprocessor;
  }

  // The arguments are converted to the kernel's parameter types once, as a launch copies them,
  // and every thread calls the kernel with them.
  template <class... Params, class... Args>
  static void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args&&... args) {
    using Call = std::tuple<void (*)(Params...), std::decay_t<Params>...>;
    Call call(kernel, static_cast<std::decay_t<Params>>(std::forward<Args>(args))...);
    run_grid(reinterpret_cast<const void*>(kernel), grid, block,
             [](void* closure) {
               std::apply([](auto function, auto... values) { function(values...); },
                          *static_cast<Call*>(closure));
             },
             &call);
  }
};

}  // namespace cuda_host
