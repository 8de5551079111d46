#!/usr/bin/env bash
# Compiles the torch-free CUDA kernels (csrc/cuda/box_loss_kernels.cuh) with nvcc for sm_90,
# every kernel for every dtype and loss kind (.ci/nvcc_check.cu), with ptxas's report.
# Fails on a compile error, on a LossKind missing from nvcc_check.cu, and on any local-memory
# spill. Needs no GPU and no torch; exits 0 with a message where nvcc is absent.
#   NVCC=/path/to/nvcc  ARCH=sm_90  bash .ci/nvcc_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "nvcc_check: skipped, no nvcc on PATH (set NVCC=...)"
  exit 0
fi

# Every enumerator of LossKind in box_math.h must be instantiated by nvcc_check.cu.
kinds=$(tr '\n' ' ' <csrc/include/alwa/box_math.h | sed -e 's/.*enum class LossKind[^{]*{//' -e 's/}.*//' |
  sed -e 's:/[*][^*]*[*]/::g' | tr ',' '\n' | sed -e 's/=.*//' -e 's/[[:space:]]//g' | grep -v '^$')
missing=0
for kind in $kinds; do
  if ! grep -q "LossKind::$kind\b" .ci/nvcc_check.cu; then
    echo "nvcc_check: LossKind::$kind is not instantiated in .ci/nvcc_check.cu"
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# 128: "loop is not reachable" after box_math.h's `if constexpr (!kGrad) return loss;`.
if ! "$NVCC" -std=c++17 -arch="$ARCH" -O3 -Xptxas -v -diag-suppress 128 \
    -Icsrc -Icsrc/include -c -o /dev/null .ci/nvcc_check.cu >"$log" 2>&1; then
  cat "$log"
  echo "nvcc_check: FAILED to compile .ci/nvcc_check.cu"
  exit 1
fi
if grep -q "warning" "$log"; then
  grep -B2 -A8 "warning" "$log" | head -60
fi

# ptxas prints, per kernel: "Compiling entry function 'NAME'", then
# "N bytes stack frame, S bytes spill stores, L bytes spill loads" and "Used R registers".
kernels=$(grep -c "Compiling entry function" "$log" || true)
spills=$(grep -E "bytes spill stores" "$log" | grep -Ev " 0 bytes spill stores, 0 bytes spill loads" || true)
max_regs=$(grep -oE "Used [0-9]+ registers" "$log" | awk '{print $2}' | sort -n | tail -1)
if [ -n "$spills" ]; then
  grep -B2 -E "bytes spill stores" "$log" | grep -B2 -Ev " 0 bytes spill stores, 0 bytes spill loads" | grep -v "^--" | head -40
  echo "nvcc_check: FAILED, ptxas spilled to local memory in the kernels above"
  exit 1
fi
echo "nvcc_check: ok, $kernels kernels for $ARCH, no spills, at most $max_regs registers a thread ($("$NVCC" --version | tail -1))"

# The torch launchers (csrc/cuda/*.cu), compiled (not linked) against the installed torch's
# headers. A CPU build of torch ships c10/cuda and ATen/cuda headers but not the CUDA
# libraries' headers they include (cuBLAS, cuSPARSE, cuSOLVER): where those are missing, empty
# stand-ins declaring their handle types are put first on the include path (the launchers use
# none of them). Skipped where torch is not importable; NVCC_CHECK_LAUNCHERS=0 skips it too.
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ "${NVCC_CHECK_LAUNCHERS:-1}" = 0 ]; then
  exit 0
fi
if ! torch_dir=$("$PYTHON" -c "import os, torch; print(os.path.dirname(torch.__file__))" 2>/dev/null) ||
    [ ! -f "$torch_dir/include/c10/cuda/CUDAGuard.h" ]; then
  echo "nvcc_check: launchers skipped, no torch with c10/cuda headers for $PYTHON"
  exit 0
fi
stubs=$(mktemp -d)
trap 'rm -rf "$log" "$stubs"' EXIT
cuda_include=$(dirname "$(command -v "$NVCC")")/../include
stub() {  # stub HEADER DECLARATIONS...: an empty stand-in unless the toolkit has the header
  [ -f "$cuda_include/$1" ] && return 0
  mkdir -p "$stubs/$(dirname "$1")"
  { echo "#pragma once"; shift; printf '%s\n' "$@"; } >"$stubs/$1"
}
[ -f "$torch_dir/include/c10/cuda/impl/cuda_cmake_macros.h" ] || stub c10/cuda/impl/cuda_cmake_macros.h
stub cublas_v2.h "typedef struct cublasContext* cublasHandle_t;" "typedef int cublasStatus_t;"
stub cublasLt.h "typedef struct cublasLtContext* cublasLtHandle_t;"
stub cusparse.h "typedef struct cusparseContext* cusparseHandle_t;" "typedef int cusparseStatus_t;"
stub cusolverDn.h "typedef struct cusolverDnContext* cusolverDnHandle_t;"
stub cusolver_common.h "typedef int cusolverStatus_t;"
for source in csrc/cuda/*.cu; do
  # The flags torch's extension builder adds, then setup.py's own.
  if ! "$NVCC" -std=c++17 -arch="$ARCH" -O3 --expt-relaxed-constexpr -Xcompiler -fPIC \
      -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
      -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ \
      -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__ -diag-suppress 128 \
      -DALWA_WITH_CUDA -DTORCH_EXTENSION_NAME=_C -Icsrc -Icsrc/include -I"$stubs" \
      -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" \
      -c -o /dev/null "$source" >"$log" 2>&1; then
    grep -v "bit-field\|AutogradState" "$log" | head -60
    echo "nvcc_check: FAILED to compile $source against torch $("$PYTHON" -c "import torch; print(torch.__version__)")"
    exit 1
  fi
done
echo "nvcc_check: ok, the launchers compile against torch $("$PYTHON" -c "import torch; print(torch.__version__)")"
