// The CUDA execution model on the host, for the test build that runs the real kernels and
// launchers of csrc/cuda/ without a GPU (cuda_shim.h maps the CUDA language onto it).
//
// A launch runs its blocks one after another; the threads of a block run as fibers on the
// calling OS thread, each until it reaches a point where CUDA threads wait for each other
// (__syncthreads, a warp shuffle or __syncwarp) or returns. Once every thread of the block waits
// or has returned, the waits that can complete do: a warp operation when every lane its mask
// names has reached it, a barrier when every thread that has not returned has (sm_70+: a
// returned thread does not hold a barrier up). What CUDA leaves undefined or hangs on is an
// error here, raised by the launch: a barrier reached at two places, a shuffle naming a lane
// that has returned or does not exist or reading one outside its mask, a wait nothing can
// release, a misaligned vector load, a device-side assert, an invalid launch configuration.
//
// Not modelled: the memory model and real warp scheduling (threads switch only where they
// wait, so a race between two waits shows only as far as the thread order exposes it: see
// Schedule), speed, and anything only a driver does. Torch-free.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <vector_types.h>

#include <string>
#include <vector>

namespace cuda_host {

// The stand-in for cudaDeviceProp (an H100 SXM by default); the launchers size their grids
// from it.
struct DeviceProperties {
  int multiprocessors = 132;
  int max_threads_per_multiprocessor = 2048;
};
DeviceProperties& device_properties();

// The order in which a block's runnable threads run between two waits. Each order is a
// schedule a GPU may choose; a kernel correct on a GPU gives the same results under both.
enum class Schedule { Forward, Reverse };
Schedule& schedule();

// Every launch since the log was last cleared, with its kernel's (demangled) name.
struct Launch {
  std::string kernel;
  dim3 grid, block;
};
std::vector<Launch>& launch_log();

// Runs `body(closure)` as every thread of a grid of `grid` blocks of `block` threads. Throws
// std::runtime_error for an invalid configuration and for any fault of a thread (the message
// names the block and thread). `kernel` only names the launch in the log and in errors.
using ThreadBody = void (*)(void* closure);
void run_grid(const void* kernel, dim3 grid, dim3 block, ThreadBody body, void* closure);

// What the shim maps CUDA's intrinsics onto. `file`, `line` and `id` (__COUNTER__, unique to the
// call site within a translation unit) name the call site: threads meet only at the same one.
struct Site {
  const char* file;
  int line;
  int id;
};
void sync_threads(Site site);
enum class WarpOp { Shfl, ShflUp, ShflDown, ShflXor, SyncWarp, Ballot };
// The value of `value` (its bits, at most 8 bytes) that this lane receives.
uint64_t warp_collective(WarpOp op, Site site, unsigned mask, uint64_t value, int param,
                         int width);
// Ends the thread and fails the launch, as a device-side assert or trap does.
[[noreturn]] void fault(const std::string& what);
[[noreturn]] void device_assert_fail(const char* assertion, const char* file, unsigned line,
                                     const char* function);
// A load of `bytes` bytes at `ptr` (a vector load): misaligned fails the launch, as on a GPU.
void check_aligned(const void* ptr, size_t bytes, const char* what);

}  // namespace cuda_host
