"""A model factory as a user writes one (``--model tests.models.user_model:build``)."""

from __future__ import annotations

from torch import Tensor, nn


class TwoTaskNet(nn.Module):
    """A shared conv trunk, a dense head (``seg``) and an image-level head (``cls``)."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.seg = nn.Conv2d(width, classes, 1)
        self.cls = nn.Linear(width, 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        f = self.trunk(images)
        return {"seg": self.seg(f), "cls": self.cls(f.mean(dim=(2, 3)))}


def build(width: int = 8, classes: int = 3) -> nn.Module:
    """The factory: ``TwoTaskNet(width, classes)``."""
    return TwoTaskNet(width, classes)


def not_a_module() -> int:
    """A factory that returns something else (refused)."""
    return 3


def bright_loss(pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """A custom task's loss: BCE on the ``bright`` label of ``tests.data.user_data``."""
    return nn.functional.binary_cross_entropy_with_logits(pred.reshape(-1), batch["bright"].reshape(-1).float())


