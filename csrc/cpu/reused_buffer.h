// Output buffers the CPU kernels reuse from one call to the next.
//
// PyTorch's CPU allocator hands blocks this large (tens of MB: the focal loss's gradient over a
// COCO head is 77 MB) to the OS and back on every call, and each fresh page then faults on its
// first write: 20 ms per 77 MB here, more than the loss itself. A ReusedBuffer keeps the
// storage of its last output and hands it out again when nothing else holds it any more (in
// training, once the backward pass has consumed the gradient), as CUDA's caching allocator does
// for device memory. Every element of a reused buffer is written by the kernel that asks for it.
// alwa::cpu_empty_cache (alwa_ext.cpu.empty_cache) lets the kept storage go.
#pragma once

#include <ATen/core/Tensor.h>

#include <mutex>

namespace alwa {
namespace cpu {

// Made once with `new` and never deleted (see registry() in the .cpp).
class ReusedBuffer {
 public:
  ReusedBuffer();  // registers the buffer with empty_cache
  // An uninitialised contiguous tensor of `sizes` and `options` (a CPU device): the kept
  // storage where it has this size in bytes and no tensor uses it, else a fresh one, kept.
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);
  void release();

 private:
  std::mutex mutex_;
  c10::Storage kept_;
};

// Drops the storage of every ReusedBuffer (tensors still using one keep it alive).
void empty_cache();

}  // namespace cpu
}  // namespace alwa
