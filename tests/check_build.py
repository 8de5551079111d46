"""Checks what a build of alwa_ext registers: every torch.ops.alwa operator that takes tensors
has a CPU kernel and, with --cuda, a CUDA kernel (no GPU needed: registration is checked,
not execution).

    python -P tests/check_build.py [--cuda]

Run by `make cuda-build` (not collected by pytest). Exits 1 naming what is missing.
"""
import argparse
import sys

import torch

import alwa_ext


def tensor_ops():
    names = sorted(
        name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("alwa::")
    )
    for name in names:
        overload = getattr(torch.ops.alwa, name).default
        if any(isinstance(arg.type, torch.TensorType) or "Tensor" in str(arg.type) for arg in overload._schema.arguments):
            yield name, overload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="also require a CUDA kernel for every operator")
    args = parser.parse_args()
    keys = ["CPU"] + (["CUDA"] if args.cuda else [])
    missing = []
    ops = list(tensor_ops())
    for name, overload in ops:
        for key in keys:
            if not overload.has_kernel_for_dispatch_key(key):
                missing.append(f"alwa::{name} ({key})")
    where = alwa_ext.__file__
    print(f"alwa_ext {alwa_ext.__version__} from {where}; torch {torch.__version__} (CUDA {torch.version.cuda})")
    if missing:
        print("check_build: no kernel for " + ", ".join(missing))
        return 1
    print(f"check_build: ok, {len(ops)} operators with {' and '.join(keys)} kernels: {', '.join(n for n, _ in ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
