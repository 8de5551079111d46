// Portability macros shared by the CPU and CUDA builds. Torch-free on purpose:
// the headers in include/alwa/ must compile with nvcc (or a host compiler) alone.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define ALWA_HOST_DEVICE __host__ __device__
#define ALWA_INLINE __forceinline__
#else
#define ALWA_HOST_DEVICE
#define ALWA_INLINE inline __attribute__((always_inline))
#endif

#define ALWA_HD_INLINE ALWA_HOST_DEVICE ALWA_INLINE
