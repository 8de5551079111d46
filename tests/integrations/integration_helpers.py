"""What the framework-adapter tests share. (Not a conftest.py: tests/ has one, which the main
suite imports as ``conftest``; a second would shadow it.)"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

INTEGRATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


from helpers.threads import single_thread  # noqa: E402,F401  (re-exported for the integration tests)


class _CrossDeviceOps(TorchDispatchMode):
    """Records every op that moves data between the host and a device: a copy across devices,
    or an op with a host tensor of one or more dimensions among device tensors (a 0-dim host
    tensor there is a scalar the host reads itself)."""

    COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default, torch.ops.aten._copy_from.default}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        tensors = inputs + [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if len({t.device.type for t in tensors}) > 1:
            if func in self.COPIES or any(t.device.type == "cpu" and t.dim() > 0 for t in inputs):
                self.seen.append(str(func))
        return out


@contextlib.contextmanager
def no_host_transfers():
    """Fails the test if the code inside copies data between the host and a device.

    With device tensors (meta ones here) the code must build nothing from host data on the
    device: ``torch.tensor(x, device=...)``, ``torch.as_tensor(..., device=...)`` and
    ``Tensor.new_tensor`` are such copies (blocking ones on CUDA, so a host sync), as is any
    dispatched op mixing host and device data. Reads back (``.item()``, ``bool()``,
    ``nonzero``, ...) already fail on meta tensors.
    """
    def guard(name, factory, device_of=None):
        def guarded(*args, **kwargs):
            device = kwargs.get("device")
            if device is None and device_of is not None:
                device = device_of(*args)
            if device is not None and torch.device(device).type != "cpu":
                raise AssertionError(f"{name} copies host data to {device}: a blocking copy (host sync) on CUDA")
            return factory(*args, **kwargs)

        return guarded

    patches = [
        (torch, "tensor", guard("torch.tensor", torch.tensor)),
        (torch, "as_tensor", guard("torch.as_tensor", torch.as_tensor)),
        (torch.Tensor, "new_tensor", guard("Tensor.new_tensor", torch.Tensor.new_tensor, lambda self, *a: self.device)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        with _CrossDeviceOps() as mode:
            yield
        assert not mode.seen, f"host <-> device transfers: {mode.seen}"
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def to_meta(value):
    """``value`` (a tensor, or lists / tuples / dicts of them) on the meta device.

    Meta tensors have shapes and dtypes but no data, so any host read of a value raises:
    ``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``nonzero``, boolean-mask indexing,
    ``torch.where(cond)``. Code that runs on them reads nothing back: no host sync.
    """
    if isinstance(value, torch.Tensor):
        out = value.detach().to("meta")
        return out.requires_grad_() if value.requires_grad else out
    if isinstance(value, dict):
        return {key: to_meta(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_meta(item) for item in value)
    return value


def alwa2_lambda(cls_recorded, reg_recorded, current=1.0):
    """λcls after one ALWA_2 window: an independent transcription of the published rule.

    ``*_recorded`` are the values ALWA records ("paper": the weighted losses). The window's
    statistic is the sample std (ddof 1); the update fires when cls > reg and sets
    λcls = 1 - (cls - reg) / cls, whatever λcls was; otherwise λcls stays ``current``.
    """

    def std(values):
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    cls, reg = std(cls_recorded), std(reg_recorded)
    return 1 - (cls - reg) / cls if cls > reg else current


def ultralytics_offline() -> None:
    """Call before importing ultralytics (it reads these once): settings in a temporary folder
    (not the user's), its online checks off, its console quiet."""
    if "YOLO_CONFIG_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="alwa-yolo-config-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["YOLO_CONFIG_DIR"] = folder
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")


def write_yolo_dataset(root, count=4, size=64):
    """``count`` images with one or two coloured rectangles each, in YOLO format; returns the
    data yaml (train and val are the same images)."""
    from PIL import Image, ImageDraw

    g = torch.Generator().manual_seed(0)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for index in range(count):
        image = Image.new("RGB", (size, size), (40, 40, 40))
        draw = ImageDraw.Draw(image)
        lines = []
        for _ in range(1 + index % 2):
            cls = int(torch.randint(0, 2, (), generator=g))
            x1, y1 = (torch.rand(2, generator=g) * size * 0.5).tolist()
            w, h = (torch.rand(2, generator=g) * size * 0.3 + size * 0.15).tolist()
            draw.rectangle([x1, y1, x1 + w, y1 + h], fill=(220, 60, 60) if cls == 0 else (60, 220, 60))
            lines.append(f"{cls} {(x1 + w / 2) / size:.6f} {(y1 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
        image.save(root / "images" / "train" / f"im{index}.jpg")
        (root / "labels" / "train" / f"im{index}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n  0: red\n  1: green\n")
    return data


def readme_snippets(subsection: str) -> list:
    """The ```python blocks of one framework's section of docs/integrations.md."""
    text = INTEGRATIONS_DOC.read_text(encoding="utf-8")
    parts = re.split(r"\n## ", text)
    matches = [part for part in parts if part.startswith(subsection)]
    assert len(matches) == 1, f"docs/integrations.md: no single section {subsection!r}"
    return re.findall(r"```python\n(.*?)```", matches[0], flags=re.S)
