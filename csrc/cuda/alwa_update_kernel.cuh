// Device code of alwa_step and alwa_pooled_update. Torch-free: it compiles with
// `nvcc -std=c++17 -x cu` alone; the launcher (alwa_update_launcher.h) only checks arguments,
// guards the device and launches.
//
// The work of one iteration is a few scalars, so each kernel is a single thread: what
// matters is that the whole iteration -- read the losses, record, maybe update -- is one
// launch on the current stream that reads nothing back to the host (graph capture replays it,
// and the decision to update is taken on the device from the recorded count).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "alwa/alwa_update.h"

namespace alwa {

// The loss dtypes the op accepts; the launcher maps torch's scalar types onto these. Storage
// of c10::Half / c10::BFloat16 is that of __half / __nv_bfloat16.
enum class LossDtype : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

__device__ __forceinline__ double load_loss(const void* ptr, LossDtype dtype) {
  switch (dtype) {
    case LossDtype::Float32:
      return static_cast<double>(*static_cast<const float*>(ptr));
    case LossDtype::Float64:
      return *static_cast<const double*>(ptr);
    case LossDtype::Float16:
      return static_cast<double>(__half2float(*static_cast<const __half*>(ptr)));
    default:
      return static_cast<double>(__bfloat162float(*static_cast<const __nv_bfloat16*>(ptr)));
  }
}

// Rounded through float for the half types, as the CPU kernel does (opmath type).
__device__ __forceinline__ void store_weight(void* ptr, LossDtype dtype, double weight) {
  switch (dtype) {
    case LossDtype::Float32:
      *static_cast<float*>(ptr) = static_cast<float>(weight);
      break;
    case LossDtype::Float64:
      *static_cast<double*>(ptr) = weight;
      break;
    case LossDtype::Float16:
      *static_cast<__half*>(ptr) = __float2half_rn(static_cast<float>(weight));
      break;
    default:
      *static_cast<__nv_bfloat16*>(ptr) = __float2bfloat16_rn(static_cast<float>(weight));
      break;
  }
}

struct LossArgs {
  const void* loss_cls;
  const void* loss_reg;
  void* applied_cls;
  void* applied_reg;
  LossDtype cls_dtype;
  LossDtype reg_dtype;
};

__global__ void alwa_step_kernel(LossArgs losses, AlwaState state, int64_t interval, AlwaRule rule,
                                 AlwaUpdate update) {
  double applied[2];
  record_and_update(load_loss(losses.loss_cls, losses.cls_dtype),
                    load_loss(losses.loss_reg, losses.reg_dtype), state, interval, rule, update,
                    applied);
  store_weight(losses.applied_cls, losses.cls_dtype, applied[kWeightCls]);
  store_weight(losses.applied_reg, losses.reg_dtype, applied[kWeightReg]);
}

__global__ void alwa_pooled_update_kernel(const double* rank_windows, int64_t num_ranks,
                                          double* weights, double* window, int64_t* num_updates,
                                          int64_t* held, AlwaRule rule) {
  update_from_pooled_windows(rank_windows, num_ranks, weights, window, num_updates, held, rule);
}

}  // namespace alwa
