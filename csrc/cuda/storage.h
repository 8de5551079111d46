// What the CUDA launchers share: torch's half types as CUDA's, kernel arguments retyped to
// them, and the grid cap. (Torch-dependent: only the launchers, csrc/cuda/*.cu, include it.)
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <type_traits>

#include "cuda/box_loss_kernels.cuh"

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
inline int64_t resident_blocks() {
  const cudaDeviceProp* props = at::cuda::getCurrentDeviceProperties();
  return static_cast<int64_t>(props->multiProcessorCount) *
         (props->maxThreadsPerMultiProcessor / cuda::kThreadsPerBlock);
}

}  // namespace alwa
