#!/usr/bin/env bash
# The proof on a GPU, in one call: build the CUDA extension, run the test suite (the CUDA
# tests first: every reference test's [cuda] variant and test_cuda_kernels.py), run the CUDA
# benchmark. Everything lands in $OUT (default benchmarks/results):
#   cuda-tests-<gpu>-<date>.txt   pytest's summaries (device, versions, counts, skips, failures)
#   bench_losses.jsonl            the benchmark's rows, appended (benchmarks/common's format)
#   cuda-<gpu>-<date>.md          its docs table and the targets (python -m benchmarks.bench_cuda)
#   gpu-proof-<gpu>-<date>.log    the build's and the run's full output
# Meant to finish within 9 minutes on an H100: build ~2 min, tests <= $TEST_BUDGET s (default
# 270: the CUDA tests first, the CPU ones in what is left), the benchmark in what is left of 8.7
# minutes (it skips torch.compile once its budget is spent).
#   OUT=/some/dir PYTHON=python3 TEST_BUDGET=270 bash benchmarks/gpu_proof.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
TEST_BUDGET=${TEST_BUDGET:-270}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
start=$SECONDS

gpu=$("$PYTHON" -c "import torch; from benchmarks.common import gpu_slug; print(gpu_slug(torch.cuda.get_device_name(0)))") || {
  echo "gpu_proof: no CUDA device visible to $PYTHON's torch"; exit 1; }
date=$(date -u +%Y-%m-%d)
log="$OUT/gpu-proof-$gpu-$date.log"
summary="$OUT/cuda-tests-$gpu-$date.txt"
nvidia-smi -L >"$log" 2>&1 || true
echo "== $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(date -u)" >>"$log"

echo "gpu_proof: building ($((SECONDS - start)) s)"
# --no-deps/--no-index: the GPU machine reaches no registry; torch and numpy are there already.
if ! timeout 330 "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -e . >>"$log" 2>&1; then
  tail -40 "$log"; echo "gpu_proof: build FAILED"; exit 1
fi
if ! "$PYTHON" -c "import alwa_ext" >>"$log" 2>&1; then  # an editable install that left _C elsewhere
  "$PYTHON" setup.py build_ext --inplace >>"$log" 2>&1
fi
if ! "$PYTHON" - >>"$log" 2>&1 <<'PY'
import torch, alwa_ext
print("alwa_ext from", alwa_ext.__file__)
assert torch.ops.alwa.box_loss.default.has_kernel_for_dispatch_key("CUDA"), "built without CUDA kernels"
PY
then
  tail -20 "$log"; echo "gpu_proof: alwa_ext has no CUDA kernels"; exit 1
fi

echo "gpu_proof: testing ($((SECONDS - start)) s)"
{
  "$PYTHON" - <<'PY'
import torch, alwa_ext
print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CUDA {torch.version.cuda}; alwa_ext {alwa_ext.__version__}")
PY
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$summary"
# run_tests SECONDS MARKER: one pytest run, its short summary and closing line appended to the
# summary (the progress dots are left out); sets test_rc to its exit status.
run_tests() {
  echo "command: python -m pytest -q -rfEs -m \"$2\" tests (timeout $1 s)" >>"$summary"
  # SIGINT first: an interrupted pytest still prints its summary of what ran (exit status 124).
  timeout -s INT -k 20 "$1" "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider -m "$2" tests >"$OUT/pytest.out" 2>&1
  test_rc=$?
  cat "$OUT/pytest.out" >>"$log"
  section=$(sed -n '/short test summary info/,$p' "$OUT/pytest.out")
  [ -n "$section" ] && echo "$section" >>"$summary"
  # No closing line in the section (none printed when nothing was skipped, or a timeout): the tail.
  echo "$section" | grep -qE "^(=+ )?[0-9]+ (passed|failed|skipped|deselected)" || tail -5 "$OUT/pytest.out" >>"$summary"
  echo "exit status: $test_rc" >>"$summary"
  rm -f "$OUT/pytest.out"
}
tests_start=$SECONDS
run_tests "$((TEST_BUDGET * 2 / 3))" cuda
cuda_rc=$test_rc
cpu_left=$((TEST_BUDGET - (SECONDS - tests_start)))
# Not the host execution of the CUDA kernels (cuda_host): the GPU runs them itself, and its
# build would spend device time.
run_tests "$((cpu_left > 60 ? cpu_left : 60))" "not cuda and not cuda_host"
[ "$cuda_rc" = 0 ] || test_rc=$cuda_rc
tail -6 "$summary"

echo "gpu_proof: benchmarking ($((SECONDS - start)) s)"
left=$((520 - (SECONDS - start)))
budget=$((left > 120 ? left - 90 : 30))
timeout "$((left > 60 ? left : 60))" "$PYTHON" -m benchmarks.bench_cuda --out-dir "$OUT" --budget-s "$budget" 2>&1 | tee -a "$log" | tail -40
bench_rc=${PIPESTATUS[0]}
# The focal-loss table on CUDA, if a minute is left.
if [ $((540 - (SECONDS - start))) -gt 60 ]; then
  timeout 60 "$PYTHON" -m benchmarks.bench_focal --device cuda --providers fused eager compiled torchvision \
    --out "$OUT/bench_focal.jsonl" 2>&1 | tee -a "$log" | tail -6
fi
echo "gpu_proof: done in $((SECONDS - start)) s (tests exit $test_rc, benchmark exit $bench_rc)"
[ "$test_rc" = 0 ] && [ "$bench_rc" = 0 ]
