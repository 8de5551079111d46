"""Builds and loads the test-only library of the CPU SIMD paths' atan2 (torch.ops.alwa_vec_test):
csrc/cpu/vec/atan2.h compiled for each ISA as the product's vector units compile it, with an op
that the product's build does not register. Ninja rebuilds it only where a source changed."""
from __future__ import annotations

import functools
import glob
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@functools.cache
def load() -> str:
    from torch.utils.cpp_extension import load as load_extension

    tag = f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    build_directory = os.path.join(ROOT, "build", "cpu-vec", tag)
    os.makedirs(build_directory, exist_ok=True)
    csrc = os.path.join(ROOT, "csrc")
    return load_extension(name="alwa_vec_test", sources=sorted(glob.glob(os.path.join(HERE, "*.cpp"))),
                          extra_cflags=["-O2"], extra_include_paths=[csrc, os.path.join(csrc, "include"), HERE],
                          build_directory=build_directory, is_python_module=False,
                          verbose=os.environ.get("CPU_VEC_VERBOSE") == "1")


if __name__ == "__main__":
    print(f"cpu_vec: alwa_vec_test -> {load()}")
