// What the CUDA launchers (cuda/*_launcher.h) share: torch's half types as CUDA's, kernel
// arguments retyped to them, the grid cap and the outputs of a reducing launch. Everything
// that needs the CUDA runtime goes through a Runtime (common/cuda/runtime.h on a GPU; the test build
// of tests/cuda_host/ runs the same code on the host), so this header includes none of it.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <type_traits>

#include "common/cuda/block_reduce.cuh"

namespace alwa {

// The kernels store at::Half / at::BFloat16 as CUDA's own types (same size and bits).
template <class scalar_t>
struct CudaStorage {
  using type = scalar_t;
};
template <>
struct CudaStorage<at::Half> {
  using type = __half;
};
template <>
struct CudaStorage<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <class scalar_t>
auto* storage_ptr(const at::Tensor& t) {
  using storage_t = typename CudaStorage<scalar_t>::type;
  static_assert(sizeof(storage_t) == sizeof(scalar_t), "storage type of another size");
  return reinterpret_cast<const storage_t*>(t.const_data_ptr<scalar_t>());
}
template <class scalar_t>
auto* mutable_storage_ptr(const at::Tensor& t) {
  using storage_t = typename CudaStorage<scalar_t>::type;
  return reinterpret_cast<storage_t*>(t.mutable_data_ptr<scalar_t>());
}

// Args<at::Half, float> -> Args<__half, float> (BoxLossArgs, FocalLossArgs): the two differ
// only in the pointee type of their pointers, so the bits carry over.
template <class storage_t, template <class, class> class Args, class scalar_t, class T>
Args<storage_t, T> as_storage_args(const Args<scalar_t, T>& args) {
  using In = Args<scalar_t, T>;
  using Out = Args<storage_t, T>;
  static_assert(sizeof(In) == sizeof(Out) && alignof(In) == alignof(Out), "layouts differ");
  static_assert(std::is_trivially_copyable_v<In> && std::is_trivially_copyable_v<Out>,
                "kernel arguments must stay trivially copyable");
  Out out;
  std::memcpy(&out, &args, sizeof(Out));
  return out;
}

// Blocks that fit on the device at once: the cap of every grid-stride grid (and so the size
// of box_loss's per-block partial sums).
template <class Runtime>
int64_t resident_blocks() {
  return static_cast<int64_t>(Runtime::multiprocessors()) *
         (Runtime::max_threads_per_multiprocessor() / cuda::kThreadsPerBlock);
}

// Where a reducing launch of `blocks` blocks writes (write_block_sum, common/cuda/block_reduce.cuh):
// with one block, the reduced loss itself (single_block_out); with more, per-block sums in a
// temporary from the caching allocator, which finish() adds up in order into the loss. All
// null for reduction "none".
template <class storage_t, class T>
struct BlockReduction {
  storage_t* reduced = nullptr;
  storage_t* single_block_out = nullptr;
  T* block_sums = nullptr;
  uint32_t blocks = 0;
  at::Tensor block_sums_tensor;

  template <class scalar_t>
  static BlockReduction make(bool reduce, uint32_t blocks, const at::Tensor& loss) {
    BlockReduction r;
    r.blocks = blocks;
    if (!reduce) return r;
    r.reduced = mutable_storage_ptr<scalar_t>(loss);
    if (blocks == 1) {
      r.single_block_out = r.reduced;
    } else {
      r.block_sums_tensor = at::empty({blocks}, loss.options().dtype(c10::CppTypeToScalarType<T>::value));
      r.block_sums = r.block_sums_tensor.template mutable_data_ptr<T>();
    }
    return r;
  }

  // The finishing block, where there are per-block sums; `args` gives the reduction's scale.
  template <class Runtime, class Args>
  void finish(const Args& args) const {
    if (block_sums == nullptr) return;
    Runtime::launch(cuda::reduce_block_sums_kernel<Args, storage_t, T>, dim3(1),
                    dim3(cuda::kThreadsPerBlock), args, block_sums, static_cast<int>(blocks),
                    reduced);
  }
};

}  // namespace alwa
