"""Loads the CMake-built library into a fresh process and checks one op against the reference.

Run by `make cmake-check` (not collected by pytest: alwa_ext._C registers the same ops, so the
two libraries cannot share a process).
"""
import importlib.util
import pathlib
import sys

import torch

torch.ops.load_library(sys.argv[1])
# The reference module is pure PyTorch; load it by path so the package (and _C) stays out.
spec = importlib.util.spec_from_file_location(
    "alwa_reference", pathlib.Path(__file__).resolve().parents[1] / "alwa_ext" / "reference.py"
)
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)

torch.manual_seed(0)
xy = torch.rand(64, 2, dtype=torch.float64) * 10
pred = torch.cat([xy, xy + torch.rand(64, 2, dtype=torch.float64) + 0.1], -1)
target = pred + 0.3 * torch.randn_like(pred)
for kind in ("iou", "giou", "diou", "ciou", "l1", "smooth_l1"):
    fused, _, _ = torch.ops.alwa.box_loss(pred, target, None, None, kind, "mean", "xyxy", 1e-7, 1.0, False, False)
    expected = reference.box_loss(pred, target, kind)
    torch.testing.assert_close(fused, expected, rtol=1e-10, atol=0)
print(f"cmake build OK: {sys.argv[1]} registers torch.ops.alwa and matches the reference")
