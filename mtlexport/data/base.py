"""The dataset contract every registered dataset follows.

``__getitem__`` returns a dict: ``image`` (float32 3xHxW, normalised), and only the labels the
dataset has: ``segmentation`` (int64 HxW, ``IGNORE_INDEX`` = void), ``depth`` (float32 1xHxW,
0 = invalid), ``normals`` (float32 3xHxW unit vectors, zero = invalid) and one float32 scalar
(0.0 / 1.0) per binary attribute, keyed by the attribute's name.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from torch import Tensor
from torch.utils.data import Dataset

from mtlexport.data.config import DataConfig
from mtlexport.errors import ConfigError

DENSE_KEYS: tuple[str, ...] = ("segmentation", "depth", "normals")


class MultiTaskDataset(Dataset[dict[str, Tensor]]):
    """Base class: the metadata attributes plus the two factory hooks the registry calls."""

    dataset_name: ClassVar[str]
    label_keys: tuple[str, ...]
    num_classes: int | None
    class_names: tuple[str, ...] | None
    attribute_names: tuple[str, ...]
    height: int
    width: int

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: DataConfig, split: str) -> MultiTaskDataset:
        """Build the ``split`` of this dataset as ``cfg`` describes."""

    @classmethod
    @abstractmethod
    def info(cls, cfg: DataConfig) -> dict[str, Any]:
        """Metadata (see ``make_info``) without loading any sample."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Tensor]: ...


def make_info(
    dense_keys: tuple[str, ...],
    class_names: tuple[str, ...] | None,
    attribute_names: tuple[str, ...],
    height: int,
    width: int,
) -> dict[str, Any]:
    """The ``dataset_info`` mapping: num_classes, class_names, attribute_names, label_keys, size."""
    return {
        "num_classes": len(class_names) if class_names is not None else None,
        "class_names": class_names,
        "attribute_names": attribute_names,
        "label_keys": tuple(dense_keys) + tuple(attribute_names),
        "height": height,
        "width": width,
    }


def set_info(dataset: MultiTaskDataset, info: dict[str, Any]) -> None:
    """Copy a ``make_info`` mapping onto the dataset's public attributes."""
    dataset.label_keys = info["label_keys"]
    dataset.num_classes = info["num_classes"]
    dataset.class_names = info["class_names"]
    dataset.attribute_names = info["attribute_names"]
    dataset.height = info["height"]
    dataset.width = info["width"]


def resolve_attributes(
    requested: tuple[str, ...], available: tuple[str, ...], default: tuple[str, ...], where: str
) -> tuple[str, ...]:
    """Match requested names case-insensitively against ``available``; empty -> ``default``."""
    lookup = {a.lower(): a for a in available}
    chosen = []
    for name in requested or default:
        if name.lower() not in lookup:
            raise ConfigError(f"unknown {where} attribute {name!r}; valid: {', '.join(available)}")
        chosen.append(lookup[name.lower()])
    return tuple(chosen)
