// The head of every translation unit of the host execution's op library: the torch and plan
// headers the launchers need, then the CUDA shim, so that the csrc/cuda/ headers included after
// this one compile as CUDA code and torch's never see __CUDACC__. ALWA_CUDA_HOST_OPS (set by
// build.py) is the library's op namespace.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "alwa_update_checks.h"
#include "box_loss_plan.h"
#include "dfl_plan.h"
#include "focal_loss_plan.h"
#include "host_runtime.h"
#include "kernel_schemas.h"
#include "task_aligned_assign_plan.h"

#include "cuda_shim.h"

#ifndef ALWA_CUDA_HOST_OPS
#error "build with -DALWA_CUDA_HOST_OPS=<op namespace> (tests/cuda_host/build.py)"
#endif

// TORCH_LIBRARY* paste their namespace argument: one level more expands the macro first.
#define CUDA_HOST_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define CUDA_HOST_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define CUDA_HOST_LIBRARY_FRAGMENT(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
