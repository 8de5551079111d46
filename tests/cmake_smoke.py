"""Loads the CMake-built library into a fresh process and checks one op against the reference.

Run by `make cmake-check` (not collected by pytest: alwa_ext._C registers the same ops, so the
two libraries cannot share a process).
"""
import pathlib
import sys
import types

import torch

torch.ops.load_library(sys.argv[1])
# alwa_ext's __init__ would load alwa_ext._C, which registers the same ops: stand in an empty
# package so its pure-PyTorch modules (the reference) import without it.
package = types.ModuleType("alwa_ext")
package.__path__ = [str(pathlib.Path(__file__).resolve().parents[1] / "alwa_ext")]
sys.modules["alwa_ext"] = package
from alwa_ext import reference  # noqa: E402

torch.manual_seed(0)
xy = torch.rand(64, 2, dtype=torch.float64) * 10
pred = torch.cat([xy, xy + torch.rand(64, 2, dtype=torch.float64) + 0.1], -1)
target = pred + 0.3 * torch.randn_like(pred)
for kind in ("iou", "giou", "diou", "ciou", "eiou", "siou", "l1", "smooth_l1"):
    fused = torch.ops.alwa.box_loss(
        pred, target, None, None, None, kind, "mean", "xyxy", 1e-7, 1.0, 1.0, 0.0,
        [0.0] * 4, [1.0] * 4, 16 / 1000,
    )
    expected = reference.box_loss(pred, target, kind)
    torch.testing.assert_close(fused, expected, rtol=1e-10, atol=0)
logits = torch.randn(64, 20, dtype=torch.float64) * 3
labels = torch.randint(0, 21, (64,))
fused = torch.ops.alwa.sigmoid_focal_loss(logits, labels, None, None, 0.25, 2.0, "mean")
torch.testing.assert_close(fused, reference.sigmoid_focal_loss(logits, labels), rtol=1e-10, atol=0)
print(f"cmake build OK: {sys.argv[1]} registers torch.ops.alwa and matches the reference")
