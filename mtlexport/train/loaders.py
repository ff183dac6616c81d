"""Data loaders for training and evaluation on top of ``mtlexport.data``.

Batches are built by the dataset's ``get_batch(indices)`` when it has one (in-memory synthetic
scenes collate in one indexing op) and by default collation otherwise. Shuffling comes from
``DistributedSampler(seed=seed).set_epoch(epoch)``, so the order of epoch ``e`` depends only on
(seed, e): resuming needs no sampler state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler, default_collate

from mtlexport.data.config import DataConfig
from mtlexport.train.distributed import DistContext, sampler


def open_split(cfg: DataConfig, split: str) -> Dataset:
    """The ``split`` of the dataset ``cfg`` names."""
    from mtlexport.data import build_dataset

    return build_dataset(cfg, split)


def dataset_info(cfg: DataConfig) -> dict[str, Any]:
    """Dataset metadata (num_classes, class_names, attribute_names, label_keys) without samples."""
    from mtlexport.data import dataset_info as info

    return dict(info(cfg))


class _Batches(Dataset):
    """Maps a list of indices to one collated batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.fast = callable(getattr(dataset, "get_batch", None))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, indices: list[int]) -> dict[str, Tensor]:
        if self.fast:
            return self.dataset.get_batch(torch.as_tensor(indices, dtype=torch.long))  # type: ignore[attr-defined]
        return default_collate([self.dataset[i] for i in indices])


def train_loader(dataset: Dataset, batch_size: int, ctx: DistContext, *, seed: int,
                 num_workers: int = 0) -> DataLoader:
    """Shuffled batches of this rank's shard; call ``loader.batch_sampler.sampler.set_epoch(e)``."""
    n = len(dataset)  # type: ignore[arg-type]
    drop_last = n >= batch_size * ctx.world_size
    shard = sampler(ctx, dataset, shuffle=True, seed=seed, drop_last=drop_last)
    batches = BatchSampler(shard, batch_size, drop_last=drop_last)
    return DataLoader(_Batches(dataset), sampler=batches, batch_size=None, num_workers=num_workers,
                      persistent_workers=False)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Every sample once, in order."""
    batches = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return DataLoader(_Batches(dataset), sampler=batches, batch_size=None, num_workers=num_workers)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Select epoch ``epoch``'s shuffle of a ``train_loader``."""
    inner = getattr(loader.sampler, "sampler", None)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(epoch)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Every tensor of ``batch`` on ``device``."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
