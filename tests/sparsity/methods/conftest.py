"""A two-task linear model whose per-task gradients are easy to write down by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn


class Toy(nn.Module):
    """backbone: y = B x; heads: a = A y, b = C y (no biases)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2, bias=False)
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 1, bias=False), "b": nn.Linear(2, 1, bias=False)})
        with torch.no_grad():
            self.backbone.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
            self.heads["a"].weight.copy_(torch.tensor([[3.0, -1.0]]))
            self.heads["b"].weight.copy_(torch.tensor([[0.5, 2.0]]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.backbone(x)
        return {name: head(y) for name, head in self.heads.items()}


class SumLoss:
    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        return output.sum()


@pytest.fixture
def toy() -> Toy:
    return Toy()


@pytest.fixture
def toy_tasks() -> dict[str, SumLoss]:
    return {"a": SumLoss(), "b": SumLoss()}
