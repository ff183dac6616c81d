"""Your own data: ``data: {name: factory, factory: "package.module:function", kwargs: {...}}``.

``function(**kwargs)`` returns the splits as a mapping ``{"train": ds, "val": ds, "test": ds}``
of map-style datasets whose items are dicts like the built-in ones (``mtlexport.data.base``):
``image`` (float32 C x H x W with H x W = ``data.height`` x ``data.width``) plus one entry per
label key (``segmentation``, ``depth``, ``normals``, scalar attributes, or a custom task's name).
Optional dataset attributes ``num_classes``, ``class_names`` and ``attribute_names`` are used
when present. The function is called once per process and configuration, and only for a
config the user gives (a checkpoint's recorded data factory is never imported by itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from mtlexport.data.base import DENSE_KEYS, MultiTaskDataset, make_info, set_info
from mtlexport.data.config import DataConfig
from mtlexport.data.labels import SPLITS
from mtlexport.errors import DataError

_SPLITS_OF: dict[str, Mapping[str, Any]] = {}


def factory_splits(cfg: DataConfig) -> Mapping[str, Any]:
    """The mapping ``cfg.factory(**cfg.kwargs)`` returns (called once per configuration)."""
    from mtlexport.models.factory import import_factory

    key = json.dumps([cfg.factory, cfg.kwargs], sort_keys=True, default=repr)
    if key not in _SPLITS_OF:
        splits = import_factory(str(cfg.factory), "data.factory")(**cfg.kwargs)
        if not isinstance(splits, Mapping):
            raise DataError(f"data.factory {cfg.factory} returned a {type(splits).__name__}; it must return a mapping "
                            f"with the keys {list(SPLITS)} (one dataset each)")
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise DataError(f"data.factory {cfg.factory} returned no {missing} split(s); return a mapping with the keys "
                            f"{list(SPLITS)} (an empty dataset for a split you do not have)")
        _SPLITS_OF[key] = splits
    return _SPLITS_OF[key]


class FactoryData(MultiTaskDataset):
    """One split of the datasets a data factory returns, with the metadata the loop needs."""

    dataset_name = "factory"

    def __init__(self, inner: Dataset, info: dict[str, Any]) -> None:
        self.inner = inner
        set_info(self, info)
        self.channels = info["channels"]

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FactoryData:
        return cls(factory_splits(cfg)[split], cls.info(cfg))

    @classmethod
    def info(cls, cfg: DataConfig) -> dict[str, Any]:
        """Metadata read from the train split's first item (and its optional attributes)."""
        train = factory_splits(cfg)["train"]
        if len(train) == 0:  # type: ignore[arg-type]
            raise DataError(f"data.factory {cfg.factory}: the train split is empty")
        item = train[0]
        if not isinstance(item, Mapping) or not isinstance(item.get("image"), Tensor):
            raise DataError(f"data.factory {cfg.factory}: an item must be a dict with an 'image' tensor and one entry "
                            "per label (see mtlexport.data.base)")
        image = item["image"]
        if image.dim() != 3 or not image.is_floating_point():
            raise DataError(f"data.factory {cfg.factory}: 'image' must be a float C x H x W tensor, got "
                            f"{str(image.dtype).removeprefix('torch.')} {list(image.shape)}")
        if tuple(image.shape[1:]) != cfg.size:
            raise DataError(f"data.factory {cfg.factory} gives {image.shape[1]}x{image.shape[2]} images but data.height "
                            f"x data.width is {cfg.height}x{cfg.width}; set data.height: {image.shape[1]} and "
                            f"data.width: {image.shape[2]}")
        labels = [k for k in item if k != "image"]
        scalars = tuple(k for k in labels if k not in DENSE_KEYS and isinstance(item[k], Tensor) and item[k].dim() == 0)
        attributes = tuple(getattr(train, "attribute_names", None) or scalars)
        class_names = getattr(train, "class_names", None)
        num_classes = getattr(train, "num_classes", None) or (len(class_names) if class_names else None)
        if num_classes and not class_names:
            class_names = tuple(f"class_{i}" for i in range(int(num_classes)))
        dense = [k for k in DENSE_KEYS if k in labels] + [k for k in labels if k not in DENSE_KEYS and k not in attributes]
        info = make_info(tuple(dense), tuple(class_names) if class_names else None, attributes, cfg.height, cfg.width)
        info["num_classes"] = num_classes
        info["channels"] = int(image.shape[0])
        return info

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.inner[index]
