"""Plain torch.nn twins of jaxnets' small models (lenet, mlp/mlp_bn, allconv4, digits_cnn).

LeNet and the MLPs follow the hyperplane code's definitions (specs/hyperplane-arrangements.md
§5.1) including their initialisers; All_Conv_4 follows WFN (specs/weight-fixing-networks.md §5)
with our chosen key names ``conv1..4`` / ``fc1..3``; the digits CNN is jaxnets' own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LENET_CFG = (6, 6, "M", 16, 16, "M", 64, 64, "M")


class LeNetRef(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in LENET_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(
            nn.Linear(64 * 3 * 3, 120), nn.ReLU(True), nn.Dropout(),
            nn.Linear(120, 84), nn.ReLU(True), nn.Dropout(),
            nn.Linear(84, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2.0))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class Hidden1Ref(nn.Module):
    def __init__(self, d_in: int, width: int, bn: bool):
        super().__init__()
        self.fc = nn.Linear(d_in, width)
        self.dropout = nn.Dropout(0.2)
        self.bn = nn.BatchNorm1d(width) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.fc(x))
        return torch.relu(self.bn(x) if self.bn is not None else x)


class BottleneckRef(nn.Module):
    def __init__(self, width: int, bottleneck: int, bn: bool):
        super().__init__()
        self.fc1 = nn.Linear(width, bottleneck)
        self.fc2 = nn.Linear(bottleneck, width)
        self.dropout = nn.Dropout(0.2)
        self.bn = nn.BatchNorm1d(width) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.fc2(self.fc1(x)))
        return torch.relu(self.bn(x) if self.bn is not None else x)


class MLPRef(nn.Module):
    def __init__(self, num_classes: int = 10, bn: bool = False, d_in: int = 3072,
                 width: int = 4096, bottleneck: int = 1024):
        super().__init__()
        self.hidden1 = Hidden1Ref(d_in, width, bn)
        self.hidden2 = BottleneckRef(width, bottleneck, bn)
        self.hidden3 = BottleneckRef(width, bottleneck, bn)
        self.hidden4 = BottleneckRef(width, bottleneck, bn)
        self.classifier = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # NCHW → (C, H, W) order
        x = self.hidden4(self.hidden3(self.hidden2(self.hidden1(x))))
        return self.classifier(x)


class AllConv4Ref(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3)
        self.conv2 = nn.Conv2d(64, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        self.conv4 = nn.Conv2d(128, 128, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(128 * 5 * 5, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        x = self.pool(torch.relu(self.conv4(torch.relu(self.conv3(x)))))
        # No nonlinearity between the Linears (WFN's All_Conv_4 as written).
        return self.fc3(self.fc2(self.fc1(torch.flatten(x, 1))))


class DigitsCNNRef(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))
