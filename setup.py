"""Builds alwa_ext._C (torch custom ops, C++ and optionally CUDA) and installs the packages.

Environment:
  FORCE_CUDA=1           build the CUDA kernels even where torch.cuda is not available
  TORCH_CUDA_ARCH_LIST   GPU architectures to compile for (torch's own variable)
  DEBUG=1                -O0 -g, no optimisation
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def use_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def extension():
    debug = os.environ.get("DEBUG", "0") == "1"
    cxx_flags = ["-std=c++17", "-fopenmp", "-DALWA_PYTHON_MODULE"]
    cxx_flags += ["-O0", "-g"] if debug else ["-O3"]
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    include_dirs = [os.path.join(ROOT, CSRC), os.path.join(ROOT, CSRC, "include")]
    kwargs = dict(include_dirs=include_dirs, extra_link_args=["-fopenmp"])
    if use_cuda():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        nvcc_flags = ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        # torch turns off __half/__nv_bfloat16's conversion operators; the kernels store half
        # types through them (csrc/cuda/box_loss_kernels.cuh). 128: "loop is not reachable"
        # after box_math.h's `if constexpr (!kGrad) return loss;`.
        nvcc_flags += ["-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__"]
        nvcc_flags += ["-diag-suppress", "128"]
        nvcc_flags += ["-O0", "-g", "-G"] if debug else ["-O3"]
        return CUDAExtension(
            "alwa_ext._C",
            sources,
            extra_compile_args={"cxx": cxx_flags + ["-DALWA_WITH_CUDA"], "nvcc": nvcc_flags + ["-DALWA_WITH_CUDA"]},
            **kwargs,
        )
    return CppExtension("alwa_ext._C", sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
