"""Small conv nets shared by the sparsity tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn


class TinyBackbone(nn.Module):
    """Stem, a depthwise conv, a grouped conv and a 1x1 conv, with BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.pw = nn.Conv2d(8, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.grouped(self.dw(x)))
        return torch.relu(self.pw(x))


class TinyMultiTask(nn.Module):
    """``backbone`` + ``heads`` like ``MultiTaskNet``: a dense conv head and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = TinyBackbone()
        self.heads = nn.ModuleDict({
            "seg": nn.Conv2d(16, 4, 1),
            "cls": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)),
        })

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        return {name: head(f) for name, head in self.heads.items()}


def multitask_loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    return out["seg"].square().mean() + out["cls"].square().mean()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny nets run fastest (and steadily on a shared machine) on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_model() -> TinyMultiTask:
    torch.manual_seed(0)
    return TinyMultiTask()
