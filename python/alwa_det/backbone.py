"""Backbones and the feature pyramid shared by both detectors.

The default is a small ResNet-style network (basic blocks, BatchNorm) sized by ``width`` so the
demo trains from scratch on two CPU cores. A torchvision ResNet-50 can be used instead when
torchvision happens to be installed; it is never required.
"""
from __future__ import annotations

from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

BACKBONES = ("small", "resnet50")


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


