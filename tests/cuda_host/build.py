"""Builds and loads the host execution of the CUDA kernels: the launchers and kernels of csrc/cuda/,
compiled by the host compiler with the CUDA shim (emulator/), as op libraries of their own.

Two builds, as nvcc compiles a .cu file twice:
  ``alwa_cuda_host``       __CUDA_ARCH__ defined: the device code a GPU runs (vector loads,
                           device-side asserts). The suite's ``[cuda_host]`` variants run on it.
  ``alwa_cuda_host_pass``  without __CUDA_ARCH__: what nvcc's host pass sees, run as well.
Each is ``torch.ops.<name>``: the schemas of torch.ops.alwa's kernel ops at the CPU key, plus the
emulated device's controls (set_device_properties, set_schedule, take_launches).

The toolkit's cuda_fp16.h / cuda_bf16.h / vector_types.h are needed (CUDA_HOME, or the toolkit of
the nvcc on PATH); without them ``available()`` says why and the tests skip.

    python tests/cuda_host/build.py     # build both (ninja: again only what changed)
"""
from __future__ import annotations

import functools
import hashlib
import glob
import os
import shutil
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# ALWA_CUDA_HOST_CSRC builds another copy of the sources (plant_bugs.py's altered ones).
CSRC = os.environ.get("ALWA_CUDA_HOST_CSRC", os.path.join(ROOT, "csrc"))

VARIANTS = {"alwa_cuda_host": [], "alwa_cuda_host_pass": ["-DCUDA_HOST_HOST_PASS"]}

# The device-neutral plans the launchers call (each backend's library compiles its own copy).
PLAN_SOURCES = [
    "box_loss_plan.cpp", "focal_loss_plan.cpp", "dfl_plan.cpp", "task_aligned_assign_plan.cpp", "alwa_update_checks.cpp",
    "common/checks.cpp",
]


def cuda_include_dir() -> str | None:
    """The CUDA toolkit's include folder, where cuda_fp16.h is."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        # nvcc on PATH may be a wrapper outside its toolkit: ask it where it lives.
        dryrun = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull], capture_output=True, text=True)
        for line in (dryrun.stdout + dryrun.stderr).splitlines():
            if line.startswith("#$ TOP="):
                candidates.append(line.split("=", 1)[1].strip())
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "include", "cuda_fp16.h")):
            return os.path.join(os.path.realpath(home), "include")
    return None


def available() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, "the host execution of the CUDA kernels needs Linux"
    if cuda_include_dir() is None:
        return False, "needs the CUDA toolkit's headers (cuda_fp16.h): set CUDA_HOME or put nvcc on PATH"
    return True, ""


def sources() -> list[str]:
    return (sorted(glob.glob(os.path.join(HERE, "emulator", "*.cpp")))
            + sorted(glob.glob(os.path.join(HERE, "library", "*.cpp")))
            + [os.path.join(CSRC, name) for name in PLAN_SOURCES])


def build_directory(name: str) -> str:
    # One folder per torch and Python build, as setup.py keeps its objects.
    tag = f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    if "ALWA_CUDA_HOST_CSRC" in os.environ:
        tag += "-" + hashlib.sha1(CSRC.encode()).hexdigest()[:8]
    path = os.path.join(ROOT, "build", "cuda-host", tag, name)
    os.makedirs(path, exist_ok=True)
    return path


@functools.cache
def load(name: str = "alwa_cuda_host") -> str:
    """Builds (where a source changed) and loads op library ``name``; returns its path."""
    from torch.utils.cpp_extension import load as load_extension

    include = cuda_include_dir()
    if include is None:
        raise RuntimeError(available()[1])
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    flags = [
        f"-DALWA_CUDA_HOST_OPS={name}",
        # The kernels' results are compared bit for bit with the CPU kernels': no contraction
        # into FMA (nvcc contracts by default, so a GPU differs in the last bits anyway).
        "-O2", "-ffp-contract=off",
        # Warnings are errors: the host compiler is a second reader of the CUDA sources (it found
        # a pointer cast that broke the aliasing rules).
        "-Wall", "-Werror", "-Wno-unknown-pragmas",
    ] + VARIANTS[name]
    return load_extension(
        name=name,
        sources=sources(),
        extra_cflags=flags,
        extra_include_paths=[CSRC, os.path.join(CSRC, "include"), os.path.join(HERE, "emulator"),
                             os.path.join(HERE, "library"), include],
        extra_ldflags=["-ldl"],
        build_directory=build_directory(name),
        is_python_module=False,
        verbose=os.environ.get("CUDA_HOST_VERBOSE") == "1",
    )


def main() -> int:
    ok, why = available()
    if not ok:
        print(f"cuda_host: skipped, {why}")
        return 0
    for name in VARIANTS:
        print(f"cuda_host: {name} -> {load(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
