"""Loads the CMake-built library into a fresh process and checks its ops against the reference.

Run by `make cmake-check` (not collected by pytest). The library registers the ops alwa_ext._C
registers, so the two cannot share a process: a child process computes the reference values
(tests/helpers/reference.py, which imports alwa_ext), this one loads the library and compares.
"""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def inputs():
    torch.manual_seed(0)
    xy = torch.rand(64, 2, dtype=torch.float64) * 10
    pred = torch.cat([xy, xy + torch.rand(64, 2, dtype=torch.float64) + 0.1], -1)
    target = pred + 0.3 * torch.randn_like(pred)
    logits = torch.randn(64, 20, dtype=torch.float64) * 3
    labels = torch.randint(0, 21, (64,))
    return pred, target, logits, labels


def reference_values(path: str) -> None:
    sys.path.insert(0, HERE)
    from alwa_ext.kinds import LOSS_KINDS
    from helpers import reference

    pred, target, logits, labels = inputs()
    torch.save({"box_loss": {kind: reference.box_loss(pred, target, kind) for kind in LOSS_KINDS},
                "sigmoid_focal_loss": reference.sigmoid_focal_loss(logits, labels)}, path)


def main(library: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "reference.pt")
        subprocess.run([sys.executable, __file__, "--reference", path], check=True)
        expected = torch.load(path)
    torch.ops.load_library(library)
    pred, target, logits, labels = inputs()
    for kind, value in expected["box_loss"].items():
        fused = torch.ops.alwa.box_loss(pred, target, None, None, None, kind, "mean", "xyxy", 1e-7, 1.0, 1.0, 0.0,
                                        [0.0] * 4, [1.0] * 4, 16 / 1000)
        torch.testing.assert_close(fused, value, rtol=1e-10, atol=0)
    fused = torch.ops.alwa.sigmoid_focal_loss(logits, labels, None, None, 0.25, 2.0, "mean")
    torch.testing.assert_close(fused, expected["sigmoid_focal_loss"], rtol=1e-10, atol=0)
    print(f"cmake build OK: {library} registers torch.ops.alwa and matches the reference "
          f"({len(expected['box_loss'])} loss kinds and the focal loss)")


if __name__ == "__main__":
    if sys.argv[1] == "--reference":
        reference_values(sys.argv[2])
    else:
        main(sys.argv[1])
