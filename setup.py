"""Builds alwa_ext._C (torch custom ops, C++ and optionally CUDA) and installs the packages.

Environment:
  FORCE_CUDA=1           build the CUDA kernels even where torch.cuda is not available
  TORCH_CUDA_ARCH_LIST   GPU architectures to compile for (torch's own variable)
  DEBUG=1                -O0 -g, no optimisation

The C++ standard is the one the installed torch asks for: torch.utils.cpp_extension adds its
own -std flag (C++17 up to torch 2.12, C++20 from 2.13) when none is given, so none is given.
"""
import glob
import os
import site
import sys

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


def use_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def pip_cuda_include_dirs():
    """Headers of the CUDA libraries that come as pip wheels beside torch (nvidia/cu13/include
    and the like): torch's CUDA headers include cuBLAS, cuSPARSE and cuSOLVER headers that a
    CUDA toolkit installed without those libraries lacks."""
    roots = site.getsitepackages() + [site.getusersitepackages()]
    roots.append(os.path.dirname(os.path.dirname(torch.__file__)))
    found = []
    for root in dict.fromkeys(roots):
        for include in sorted(glob.glob(os.path.join(root, "nvidia", "*", "include"))):
            if os.path.isfile(os.path.join(include, "cublas_v2.h")) and include not in found:
                found.append(include)
    return found


def extension():
    debug = os.environ.get("DEBUG", "0") == "1"
    cxx_flags = ["-fopenmp", "-DALWA_PYTHON_MODULE"]
    cxx_flags += ["-O0", "-g"] if debug else ["-O3"]
    sources = sorted(
        glob.glob(os.path.join(CSRC, "*.cpp"))
        + glob.glob(os.path.join(CSRC, "common", "*.cpp"))
        + glob.glob(os.path.join(CSRC, "cpu", "*.cpp"))
        + glob.glob(os.path.join(CSRC, "autograd", "*.cpp"))
    )
    include_dirs = [os.path.join(ROOT, CSRC), os.path.join(ROOT, CSRC, "include")]
    kwargs = dict(extra_link_args=["-fopenmp"])
    if use_cuda():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        nvcc_flags = ["--expt-relaxed-constexpr", "-lineinfo"]
        # torch turns off __half/__nv_bfloat16's conversion operators; the kernels store half
        # types through them (csrc/common/cuda/launch_shape.h).
        nvcc_flags += ["-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__"]
        nvcc_flags += ["-O0", "-g", "-G"] if debug else ["-O3"]
        return CUDAExtension(
            "alwa_ext._C",
            sources,
            include_dirs=include_dirs + pip_cuda_include_dirs(),
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **kwargs,
        )
    return CppExtension("alwa_ext._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx_flags}, **kwargs)


# Object files of one torch (and Python) build per folder: two environments building from one
# tree (make test, make test-torch-latest) never link each other's objects.
BUILD_BASE = os.path.join("build", f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")

setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"build": {"build_base": BUILD_BASE}},
)
