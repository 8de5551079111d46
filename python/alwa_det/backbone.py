"""Backbones and the feature pyramid shared by both detectors.

The default is a small ResNet-style network (basic blocks, BatchNorm) sized by ``width`` so the
demo trains from scratch on two CPU cores. A torchvision ResNet-50 can be used instead when
torchvision happens to be installed; it is never required.
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKBONES = ("small", "resnet50")
# What `alwa-train pretrain` writes: the backbone's weights and what they fit (and were trained on).
BACKBONE_FILE_FORMAT = "alwa_det.backbone.v1"


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class StagedBackbone(nn.Module):
    """A stem, then four stages whose outputs are C2..C5 (strides 4, 8, 16, 32)."""

    out_strides = [4, 8, 16, 32]
    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class SmallResNet(StagedBackbone):
    """Stem of stride 4, then four stages of strides 4, 8, 16, 32 (outputs C2..C5)."""

    def __init__(self, width: int = 16, blocks_per_stage: Sequence[int] = (1, 1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = width
        self.out_channels: List[int] = []
        for index, num_blocks in enumerate(blocks_per_stage):
            out_channels = width * 2**index
            blocks = [BasicBlock(in_channels, out_channels, 1 if index == 0 else 2)]
            blocks += [BasicBlock(out_channels, out_channels, 1) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
            self.out_channels.append(out_channels)
        self.stages = nn.ModuleList(stages)


class TorchvisionResNet50(StagedBackbone):
    def __init__(self, pretrained: bool = False):
        super().__init__()
        try:
            import torchvision
        except ImportError as error:
            raise ValueError("backbone 'resnet50' needs torchvision, which is not installed; use --backbone small") from error
        weights = "DEFAULT" if pretrained else None
        net = torchvision.models.resnet50(weights=weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_channels = [256, 512, 1024, 2048]


class FPN(nn.Module):
    """Feature pyramid P{min_level}..P{max_level} from backbone outputs C2..C5.

    Levels above 5 come from stride-2 convolutions on P5 (RetinaNet's P6/P7).
    """

    def __init__(self, in_channels: Sequence[int], channels: int, min_level: int, max_level: int):
        super().__init__()
        if not 2 <= min_level <= 5 or max_level < min_level:
            raise ValueError(f"FPN levels must satisfy 2 <= min_level <= 5 and min_level <= max_level, got {min_level}..{max_level}")
        self.min_level = min_level
        self.max_level = max_level
        used = list(range(min_level, 6))  # backbone levels with a lateral connection
        self.lateral = nn.ModuleList([nn.Conv2d(in_channels[level - 2], channels, 1) for level in used])
        self.output = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in used])
        self.extra = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(6, max_level + 1)]
        )
        self.strides = [2**level for level in range(min_level, max_level + 1)]

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        inputs = features[self.min_level - 2 :]
        laterals = [conv(x) for conv, x in zip(self.lateral, inputs)]
        for index in range(len(laterals) - 1, 0, -1):
            laterals[index - 1] = laterals[index - 1] + F.interpolate(laterals[index], size=laterals[index - 1].shape[-2:], mode="nearest")
        outputs = [conv(x) for conv, x in zip(self.output, laterals)]
        for conv in self.extra:
            previous = outputs[-1]
            outputs.append(conv(F.relu(previous) if len(outputs) > len(laterals) else previous))
        return outputs[: self.max_level - self.min_level + 1]


def build_backbone(name: str, width: int, blocks_per_stage: Sequence[int]) -> nn.Module:
    if name == "small":
        return SmallResNet(width, blocks_per_stage)
    if name == "resnet50":
        return TorchvisionResNet50()
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")




def backbone_architecture(name: str, width: int, blocks_per_stage: Sequence[int]) -> Dict[str, object]:
    """What a backbone's weights must fit: the small network's width and blocks; ResNet-50's are fixed."""
    if name == "resnet50":
        return {"backbone": name}
    return {"backbone": name, "width": int(width), "blocks": [int(b) for b in blocks_per_stage]}


def save_backbone(path: str, backbone: nn.Module, architecture: Dict[str, object], trained_on: Dict[str, object]) -> None:
    """A backbone file: ``{format, architecture, trained_on, state_dict}``, written whole or not at all."""
    from .run_folder import save_atomically

    state = {key: value.detach().cpu().clone() for key, value in backbone.state_dict().items()}
    save_atomically({"format": BACKBONE_FILE_FORMAT, "architecture": architecture, "trained_on": trained_on,
                     "state_dict": state}, path)


def _torchvision_resnet_keys(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A torchvision ResNet's state dict (conv1, bn1, layer1..4, fc) in TorchvisionResNet50's names."""
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "conv1":
            renamed[f"stem.0.{rest}"] = value
        elif head == "bn1":
            renamed[f"stem.1.{rest}"] = value
        elif head.startswith("layer") and head[5:].isdigit():
            renamed[f"stages.{int(head[5:]) - 1}.{rest}"] = value
        elif head != "fc":  # the classifier has no place in a detector
            renamed[key] = value
    return renamed


def load_backbone_weights(backbone: nn.Module, path: str, architecture: Dict[str, object]) -> str:
    """Load ``path`` into ``backbone``; returns the file's SHA-256, which the run records.

    ``path`` is a file of :func:`save_backbone` (its architecture must be ``architecture``), or a
    plain state dict of the backbone (for ``resnet50``, a torchvision ResNet-50's ``state_dict()``,
    such as the ImageNet weights torchvision downloads, is taken as it is). Every tensor must fit:
    a missing, extra or misshapen one is an error naming the file, never a partial load.
    """
    what = f"backbone_weights: {path}"
    if not os.path.isfile(path):
        raise ValueError(f"{what}: no such file")
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{what}: cannot be read as torch weights ({type(error).__name__})") from None
    if isinstance(content, dict) and content.get("format") == BACKBONE_FILE_FORMAT:
        saved = content.get("architecture")
        if saved != architecture:
            raise ValueError(f"{what}: holds a backbone of {_describe(saved)}, the run's is {_describe(architecture)}")
        state = content["state_dict"]
    elif isinstance(content, dict) and content and all(isinstance(v, Tensor) for v in content.values()):
        state = _torchvision_resnet_keys(content) if architecture["backbone"] == "resnet50" else content
    else:
        raise ValueError(f"{what}: neither a backbone file of alwa-train pretrain nor a state dict of tensors")
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        problems = [f"{label} {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if keys]
        raise ValueError(f"{what}: does not fit the run's {_describe(architecture)} backbone ({'; '.join(problems)})")
    backbone.load_state_dict(state)
    return digest


def _describe(architecture) -> str:
    if not isinstance(architecture, dict):
        return repr(architecture)
    text = str(architecture.get("backbone"))
    if "width" in architecture:
        text += f" (width {architecture['width']}, blocks {','.join(str(b) for b in architecture.get('blocks', ()))})"
    return text
