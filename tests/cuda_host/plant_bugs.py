"""Shows that the host execution's tests fail on wrong CUDA kernels: plants one bug at a time in
a copy of csrc/ (a dropped last element, a wrong warp reduction, a halved partial sum, a missing
barrier, a misread tile, swapped ALWA weights), builds the host execution from it and runs the
``cuda_host`` tests until the first failure. Every planted bug must be caught. Not part of the
suite (each bug costs a build): run it by hand after changing the tests or the kernels.

    .venv/bin/python tests/cuda_host/plant_bugs.py [name ...]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# name: (family, file under csrc/, the original text, the planted text)
BUGS = {
    "dropped_last_box": ("elementwise", "cuda/box_loss_kernels.cuh",
                         "i < args.num_boxes;\n       i += step)", "i < args.num_boxes - 1;\n       i += step)"),
    "dropped_last_focal_element": ("elementwise", "cuda/focal_loss_kernels.cuh",
                                   "i < num_elements;", "i < num_elements - 1;"),
    "warp_sum_stops_early": ("block reduction", "common/cuda/block_reduce.cuh",
                             "offset > 0; offset /= 2", "offset > 1; offset /= 2"),
    "halved_partial_sum": ("block reduction", "common/cuda/block_reduce.cuh",
                           "block_sums[blockIdx.x] = sum;", "block_sums[blockIdx.x] = sum * T(0.5);"),
    "missing_tile_barrier": ("tiled backward", "cuda/box_iou_backward_kernels.cuh",
                             "      stage_boxes(boxes2, col0, count, format, cols);\n      __syncthreads();",
                             "      stage_boxes(boxes2, col0, count, format, cols);"),
    "misread_tile": ("tiled backward", "cuda/box_iou_backward_kernels.cuh",
                     "iou_loss<K, true>(a, cols[c],", "iou_loss<K, true>(a, cols[c % 128],"),
    "chunks_added_but_last": ("tiled backward", "cuda/box_iou_backward_kernels.cuh",
                              "for (int64_t c = 0; c < num_chunks; ++c) {", "for (int64_t c = 0; c < num_chunks - 1; ++c) {"),
    "alwa_weights_swapped": ("ALWA", "cuda/alwa_update_kernel.cuh",
                             "store_weight(losses.applied_cls, losses.cls_dtype, applied[kWeightCls]);",
                             "store_weight(losses.applied_cls, losses.cls_dtype, applied[kWeightReg]);"),
}


def plant(name: str, workdir: str) -> str:
    family, path, original, planted = BUGS[name]
    csrc = os.path.join(workdir, name, "csrc")
    shutil.copytree(os.path.join(ROOT, "csrc"), csrc)
    with open(os.path.join(csrc, path)) as f:
        text = f.read()
    if text.count(original) != 1:
        raise SystemExit(f"{name}: the text to alter is not once in csrc/{path}; update BUGS")
    with open(os.path.join(csrc, path), "w") as f:
        f.write(text.replace(original, planted))
    return csrc


def main(names) -> int:
    names = names or list(BUGS)
    missed = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            env = dict(os.environ, ALWA_CUDA_HOST_CSRC=plant(name, workdir))
            begin = time.time()
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "cuda_host",
                 "tests/cuda_host", "tests/test_cuda_kernels.py", "tests/test_box_loss.py", "tests/test_box_iou.py",
                 "tests/test_focal_loss.py", "tests/test_alwa.py"],
                cwd=ROOT, env=env, capture_output=True, text=True)
            failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
            verdict = f"caught by {failed[0][7:].split(' - ')[0]}" if result.returncode == 1 and failed else "MISSED"
            if verdict == "MISSED":
                missed.append(name)
                print(result.stdout[-3000:], result.stderr[-3000:])
            print(f"{BUGS[name][0]:16s} {name:28s} {verdict} ({time.time() - begin:.0f} s)", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
