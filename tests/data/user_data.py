"""A data factory as a user writes one (``data.factory: tests.data.user_data:splits``)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

CLASSES = 3


class Scenes(Dataset):
    """Random images; segmentation, depth and one attribute derived from them."""

    num_classes = CLASSES

    def __init__(self, n: int, size: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=gen)
        self.seg = (self.images[:, 0] > 0).long() + (self.images[:, 1] > 1).long()
        self.depth = self.images[:, 2:3].abs() + 0.1
        self.bright = (self.images.mean(dim=(1, 2, 3)) > 0).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "segmentation": self.seg[i], "depth": self.depth[i],
                "bright": self.bright[i]}


def splits(n: int = 8, size: int = 16) -> dict[str, Dataset]:
    """The three splits (seeded, so every call gives the same data)."""
    return {"train": Scenes(n, size, 0), "val": Scenes(max(n // 2, 1), size, 1), "test": Scenes(max(n // 2, 1), size, 2)}
