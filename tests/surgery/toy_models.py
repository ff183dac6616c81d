"""A non-zoo model for the ``--model package.module:factory`` path: concatenation, depthwise and
grouped convolutions, a residual stage and an avgpool-flatten-linear head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cbr(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16, 3)
        self.branch_a = cbr(16, 8, 1)
        self.branch_b = cbr(16, 8, 3)
        self.expand = cbr(16, 24, 1)          # reads the concatenation
        self.dw = cbr(24, 24, 3, groups=24)   # depthwise
        self.project = nn.Sequential(nn.Conv2d(24, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.grouped = cbr(16, 16, 3, groups=4)
        self.transition = cbr(16, 16, 1)
        self.stage = nn.Sequential(Block(16, 8), Block(16, 8))
        self.seg_head = nn.Conv2d(16, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16 * 4, 12)
        self.classifier = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        x = self.stem(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.project(self.dw(self.expand(x)))
        x = self.transition(self.grouped(x))
        x = self.stage(x)
        seg = F.interpolate(self.seg_head(x), size=size, mode="bilinear", align_corners=False)
        cls = self.classifier(torch.relu(self.fc(torch.flatten(self.pool(x), 1))))
        return {"seg": seg, "cls": cls}


def toy_net() -> ToyNet:
    """Factory used as ``toy_models:toy_net``."""
    torch.manual_seed(1)
    return ToyNet().eval()
