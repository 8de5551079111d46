#include "cpu/reused_buffer.h"

#include <ATen/ops/empty.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <vector>

namespace alwa {
namespace cpu {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<ReusedBuffer*> buffers;
};

// Never destroyed (nor are the buffers): at exit, storage freed after the allocator's own
// statics are gone would crash; the OS takes the memory back.
Registry& registry() {
  static Registry* instance = new Registry();
  return *instance;
}

}  // namespace

ReusedBuffer::ReusedBuffer() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.buffers.push_back(this);
}

at::Tensor ReusedBuffer::empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  const size_t nbytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
  std::lock_guard<std::mutex> lock(mutex_);
  // use_count 1: this buffer alone holds the storage, so no tensor can see what is written next.
  if (nbytes > 0 && kept_ && kept_.use_count() == 1 && kept_.nbytes() == nbytes) {
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(kept_), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                    options.dtype());
    impl->set_sizes_contiguous(sizes);
    return at::Tensor(std::move(impl));
  }
  at::Tensor fresh = at::empty(sizes, options);
  if (nbytes > 0) kept_ = fresh.storage();
  return fresh;
}

void ReusedBuffer::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  kept_ = c10::Storage();
}

void empty_cache() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (ReusedBuffer* buffer : r.buffers) buffer->release();
}

}  // namespace cpu
}  // namespace alwa

TORCH_LIBRARY_IMPL(alwa, CatchAll, m) { m.impl("cpu_empty_cache", &alwa::cpu::empty_cache); }
