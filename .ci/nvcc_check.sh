#!/usr/bin/env bash
# Compiles the torch-free CUDA kernels (csrc/cuda/*.cuh) with nvcc for sm_90,
# every kernel for every dtype and loss kind (.ci/nvcc_check.cu), with ptxas's report.
# Fails on a compile error and on any local-memory spill (nvcc_check.cu instantiates every
# row of the kinds table). Needs no GPU and no torch; exits 0 with a message where nvcc is absent. (The launchers,
# csrc/cuda/*.cu, are compiled and linked against a CUDA build of torch by `make cuda-build`.)
#   NVCC=/path/to/nvcc  ARCH=sm_90  bash .ci/nvcc_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "nvcc_check: skipped, no nvcc on PATH (set NVCC=...)"
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# C++17: the headers stay within it, so torch releases that build extensions as C++17 (before
# 2.13) build them too; newer torch builds them as C++20 (setup.py lets torch choose).
if ! "$NVCC" -std=c++17 -arch="$ARCH" -O3 -Xptxas -v \
    -Icsrc -Icsrc/include -c -o /dev/null .ci/nvcc_check.cu >"$log" 2>&1; then
  cat "$log"
  echo "nvcc_check: FAILED to compile .ci/nvcc_check.cu"
  exit 1
fi
if grep -q "warning" "$log"; then
  grep -B2 -A8 "warning" "$log" | head -60
fi

# ptxas prints, per kernel: "Compiling entry function 'NAME'", then
# "N bytes stack frame, S bytes spill stores, L bytes spill loads" and "Used R registers, ...,
# M bytes smem".
kernels=$(grep -c "Compiling entry function" "$log" || true)
spills=$(grep -E "bytes spill stores" "$log" | grep -Ev " 0 bytes spill stores, 0 bytes spill loads" || true)
max_regs=$(grep -oE "Used [0-9]+ registers" "$log" | awk '{print $2}' | sort -n | tail -1)
# Static shared memory a block: at most 48 KiB without an opt-in the launchers never make.
max_smem=$(grep -oE "[0-9]+ bytes smem" "$log" | awk '{print $1}' | sort -n | tail -1)
max_smem=${max_smem:-0}
if [ "$max_smem" -gt 49152 ]; then
  echo "nvcc_check: FAILED, a kernel uses $max_smem bytes of static shared memory (48 KiB at most)"
  exit 1
fi
if [ -n "$spills" ]; then
  grep -B2 -E "bytes spill stores" "$log" | grep -B2 -Ev " 0 bytes spill stores, 0 bytes spill loads" | grep -v "^--" | head -40
  echo "nvcc_check: FAILED, ptxas spilled to local memory in the kernels above"
  exit 1
fi
echo "nvcc_check: ok, $kernels kernels for $ARCH, no spills, at most $max_regs registers a thread and $max_smem bytes of shared memory a block ($("$NVCC" --version | tail -1))"
