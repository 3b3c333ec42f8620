"""Plain torch.nn CIFAR ResNets (depth 6n+2) for parity tests, in both shortcut variants.

Option A (the akamaster checkpoints): the shortcut of a shape-changing block keeps every second
row and column starting at index 0 and zero-pads ``planes // 4`` channels on each side; it has
no parameters. Head ``linear``; pooling is the mean over the final 8×8 map.
Option B (chenyaofo / SeaM): a 1×1 stride-2 conv + BN shortcut named ``downsample.0/.1``;
head ``fc``. Every conv is bias-free; BN uses PyTorch defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortcutA(nn.Module):
    """Parameter-free subsample-and-pad shortcut (akamaster's LambdaLayer, written out)."""

    def __init__(self, planes: int, stride: int):
        super().__init__()
        self.pad = planes // 4
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad's last pair addresses the channel axis of an NCHW tensor here.
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, option: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option = option
        changes = stride != 1 or in_planes != planes
        if option == "A":
            # Named like akamaster's attribute; an empty Sequential is the identity.
            self.shortcut: nn.Module = ShortcutA(planes, stride) if changes else nn.Sequential()
        elif changes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, 0, bias=False), nn.BatchNorm2d(planes)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option == "A":
            identity = self.shortcut(x)
        else:
            identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, option: str = "A"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.option = option
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            blocks = []
            for b in range(n):
                stride = 2 if stage > 1 and b == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, option))
                in_planes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        head = nn.Linear(64, num_classes)
        if option == "A":
            self.linear = head
        else:
            self.fc = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate vector (B, 64)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.linear(f) if self.option == "A" else self.fc(f)


def cifar_resnet(depth: int = 20, option: str = "A", num_classes: int = 10) -> CifarResNet:
    return CifarResNet(depth, num_classes, option)


def resnet20(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(20, num_classes, "A")


def resnet20_b(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(20, num_classes, "B")
