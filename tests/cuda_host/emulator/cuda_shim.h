// The CUDA language for the host compiler: include this after every torch and system header a
// translation unit needs and before csrc/cuda/ headers, which then compile unchanged, their
// kernels as plain functions that emulator.h runs as CUDA threads.
//
// The toolkit's cuda_fp16.h / cuda_bf16.h have a host implementation of __half and
// __nv_bfloat16 that is used only while __CUDACC__ is undefined, so they are included first and
// __CUDACC__ is defined after them (never with -D). __CUDA_ARCH__ is defined too, so the kernels'
// device-only paths (vector loads, device-side asserts) compile and run; with
// CUDA_HOST_HOST_PASS it is not, and what nvcc's host pass sees compiles and runs instead.
#pragma once

#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#error "cuda_shim.h is for the host compiler, and must come before every CUDA header of csrc/cuda/"
#endif

#include <assert.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>
#include <vector_types.h>

#include "emulator.h"

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// One copy per kernel function: right because a launch runs one block at a time, and launches
// one at a time. (Shared memory starts a block with what the last block left in it, where a GPU
// leaves it undefined.)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

#define CUDA_HOST_SITE (::cuda_host::Site{__FILE__, __LINE__, __COUNTER__})
#define __syncthreads() ::cuda_host::sync_threads(CUDA_HOST_SITE)
#define __syncwarp(...) ::cuda_host::sync_warp(CUDA_HOST_SITE, ##__VA_ARGS__)
#define __shfl_sync(...) ::cuda_host::shuffle(::cuda_host::WarpOp::Shfl, CUDA_HOST_SITE, __VA_ARGS__)
#define __shfl_up_sync(...) ::cuda_host::shuffle(::cuda_host::WarpOp::ShflUp, CUDA_HOST_SITE, __VA_ARGS__)
#define __shfl_down_sync(...) \
  ::cuda_host::shuffle(::cuda_host::WarpOp::ShflDown, CUDA_HOST_SITE, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cuda_host::shuffle(::cuda_host::WarpOp::ShflXor, CUDA_HOST_SITE, __VA_ARGS__)
#define __ballot_sync(mask, predicate) ::cuda_host::ballot(CUDA_HOST_SITE, mask, predicate)
// A device-side assert (and the assert macro in kernel code) fails the launch.
#define __assert_fail(assertion, file, line, function) \
  ::cuda_host::device_assert_fail(assertion, file, line, function)
#define __trap() ::cuda_host::fault("__trap()")

namespace cuda_host {

template <class T>
T shuffle(WarpOp op, Site site, unsigned mask, T value, int param, int width = warpSize) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "a shuffle moves at most 8 bytes");
  uint64_t bits = 0;
  memcpy(&bits, &value, sizeof(T));
  bits = warp_collective(op, site, mask, bits, param, width);
  memcpy(&value, &bits, sizeof(T));
  return value;
}

inline void sync_warp(Site site, unsigned mask = 0xffffffffu) {
  warp_collective(WarpOp::SyncWarp, site, mask, 0, 0, warpSize);
}

inline unsigned ballot(Site site, unsigned mask, int predicate) {
  return static_cast<unsigned>(warp_collective(WarpOp::Ballot, site, mask, predicate != 0, 0, warpSize));
}

}  // namespace cuda_host

// Bit count, and the integer atomics the kernels use (a thread runs until it waits, so a
// read-modify-write here is atomic as it is on a GPU).
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int atomicAdd(int* address, int value) {
  const int old = *address;
  *address = old + value;
  return old;
}
inline int atomicMax(int* address, int value) {
  const int old = *address;
  if (value > old) *address = value;
  return old;
}

// A read through the read-only cache: a plain load, which must be aligned to its size.
template <class T>
inline T __ldg(const T* ptr) {
  ::cuda_host::check_aligned(ptr, sizeof(T), "__ldg");
  return *ptr;
}

#if !defined(CUDA_HOST_HOST_PASS)
#define __CUDA_ARCH__ 900
#endif
#define __CUDACC__ 1
