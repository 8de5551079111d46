// Kernels that check the emulator itself (tests/cuda_host/test_emulator.py): CUDA's numbering,
// the shuffles' results, barriers past returned threads, and the faults a GPU would hang or
// fail on. `selftest(case)` runs one and returns what it wrote.
#include <string>

#include "prelude.h"

namespace {

// Every thread writes its block and thread index, the dims and its linear lane and warp.
__global__ void numbering_kernel(int64_t* out) {
  const int64_t block = blockIdx.x + gridDim.x * (blockIdx.y + int64_t(gridDim.y) * blockIdx.z);
  const int64_t thread = threadIdx.x + blockDim.x * (threadIdx.y + int64_t(blockDim.y) * threadIdx.z);
  const int64_t threads = int64_t(blockDim.x) * blockDim.y * blockDim.z;
  int64_t* row = out + 8 * (block * threads + thread);
  const int64_t values[8] = {blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
                             threadIdx.y, threadIdx.z, thread % warpSize, thread / warpSize};
  for (int k = 0; k < 8; ++k) row[k] = values[k];
}

// One warp: each lane's results of the shuffles, with and without a width, and of a ballot.
__global__ void shuffles_kernel(int64_t* out) {
  const int lane = threadIdx.x;
  int64_t* row = out + 8 * lane;
  row[0] = __shfl_down_sync(0xffffffffu, lane, 3);
  row[1] = __shfl_up_sync(0xffffffffu, lane, 2);
  row[2] = __shfl_xor_sync(0xffffffffu, lane, 5);
  row[3] = __shfl_sync(0xffffffffu, lane, 7);
  row[4] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
  row[5] = __shfl_sync(0xffffffffu, lane, 9, 8);  // lane 9 of each group of 8 is its lane 1
  row[6] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  row[7] = __shfl_down_sync(0xffffffffu, 1.5 * lane, 1) == 1.5 * (lane < 31 ? lane + 1 : lane);
}

// Threads past `live` return before the barrier; the rest meet at it and read what the others
// wrote before it.
__global__ void barrier_after_return_kernel(int64_t* out, int live) {
  __shared__ int64_t staged[256];
  if (threadIdx.x >= static_cast<unsigned>(live)) return;
  staged[threadIdx.x] = 10 * threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = staged[live - 1 - threadIdx.x];
}

// A tile staged by the threads and read by all: with `barrier` false the write-read barrier is
// left out, a missing-barrier bug.
__global__ void staging_kernel(int64_t* out, bool barrier) {
  __shared__ int64_t tile[64];
  int64_t sum = 0;
  for (int step = 0; step < 3; ++step) {
    if (barrier) __syncthreads();  // the previous tile has been read
    tile[threadIdx.x] = step * 100 + threadIdx.x;
    if (barrier) __syncthreads();
    for (int k = 0; k < 64; ++k) sum += tile[k];
  }
  out[threadIdx.x] = sum;
}

__global__ void divergent_barrier_kernel(int64_t* out) {
  if (threadIdx.x < 10) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// A full-mask shuffle in a block of 40 threads: its second warp has 8 lanes.
__global__ void partial_warp_kernel(int64_t* out) { out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1); }

// The lower half-warp shuffles down by one: lane 15 reads lane 16, outside the mask.
__global__ void outside_mask_kernel(int64_t* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 1, 1);
}

// A full-mask shuffle after lane 31 has returned.
__global__ void returned_lane_kernel(int64_t* out) {
  if (threadIdx.x == 31) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
}

// Thread 0 waits at a barrier while the rest of its warp waits for it at a shuffle.
__global__ void deadlock_kernel(int64_t* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
  }
}

__global__ void misaligned_load_kernel(const float* data, float* out) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(data + 1));
  out[0] = v.x;
}

__global__ void assert_kernel(int64_t* out) {
  if (threadIdx.x == 5) __assert_fail("value in range", __FILE__, __LINE__, __func__);
  out[threadIdx.x] = 1;
}

using cuda_host::HostRuntime;

at::Tensor selftest(const std::string& name) {
  const auto options = at::TensorOptions().dtype(at::kLong);
  if (name == "numbering") {
    at::Tensor out = at::full({3 * 2 * 2, 8 * 4 * 2, 8}, -1, options);
    HostRuntime::launch(numbering_kernel, dim3(3, 2, 2), dim3(8, 4, 2), out.mutable_data_ptr<int64_t>());
    return out;
  }
  if (name == "shuffles") {
    at::Tensor out = at::full({32, 8}, -1, options);
    HostRuntime::launch(shuffles_kernel, dim3(1), dim3(32), out.mutable_data_ptr<int64_t>());
    return out;
  }
  if (name == "barrier_after_return") {
    at::Tensor out = at::full({256}, -1, options);
    HostRuntime::launch(barrier_after_return_kernel, dim3(2), dim3(256), out.mutable_data_ptr<int64_t>(), 100);
    return out;
  }
  if (name == "staging" || name == "staging_without_barrier") {
    at::Tensor out = at::full({64}, -1, options);
    HostRuntime::launch(staging_kernel, dim3(1), dim3(64), out.mutable_data_ptr<int64_t>(), name == "staging");
    return out;
  }
  at::Tensor out = at::full({256}, -1, options);
  int64_t* p = out.mutable_data_ptr<int64_t>();
  if (name == "divergent_barrier") {
    HostRuntime::launch(divergent_barrier_kernel, dim3(1), dim3(64), p);
  } else if (name == "partial_warp") {
    HostRuntime::launch(partial_warp_kernel, dim3(1), dim3(40), p);
  } else if (name == "outside_mask") {
    HostRuntime::launch(outside_mask_kernel, dim3(1), dim3(32), p);
  } else if (name == "returned_lane") {
    HostRuntime::launch(returned_lane_kernel, dim3(1), dim3(32), p);
  } else if (name == "deadlock") {
    HostRuntime::launch(deadlock_kernel, dim3(1), dim3(32), p);
  } else if (name == "misaligned_load") {
    at::Tensor data = at::zeros({16}, at::TensorOptions().dtype(at::kFloat));
    at::Tensor result = at::zeros({1}, at::TensorOptions().dtype(at::kFloat));
    HostRuntime::launch(misaligned_load_kernel, dim3(1), dim3(1), data.const_data_ptr<float>(),
                        result.mutable_data_ptr<float>());
  } else if (name == "assert") {
    HostRuntime::launch(assert_kernel, dim3(1), dim3(32), p);
  } else if (name == "block_too_large") {
    HostRuntime::launch(assert_kernel, dim3(1), dim3(2048), p);
  } else if (name == "empty_grid") {
    HostRuntime::launch(assert_kernel, dim3(0), dim3(32), p);
  } else {
    TORCH_CHECK_VALUE(false, "selftest: unknown case '", name, "'");
  }
  return out;
}

}  // namespace

CUDA_HOST_LIBRARY_FRAGMENT(ALWA_CUDA_HOST_OPS, m) { m.def("selftest(str name) -> Tensor", &selftest); }
