"""Datasets: the default synthetic multi-task scenes and the NYUv2 / CelebAMask-HQ loaders.

This subpackage owns the sample contract (see ``mtlexport.data.base``), image normalisation
and label-aware resizing (``transforms``), label conventions (``labels``) and ``DataConfig``.
Everything else builds datasets through ``build_dataset(cfg, split)`` and asks
``dataset_info(cfg)`` for head sizes without loading data; ``samples.real_images`` gives a
checkpoint's first real images for export validation and slim verification.

To add a dataset: write one module with a ``MultiTaskDataset`` subclass that implements
``from_config(cfg, split)``, ``info(cfg)``, ``__len__`` and ``__getitem__`` (returning only the
label keys it has), raise ``DataError`` with one line naming the file and the fix for any bad
input, register it below in ``DATASETS``, and add fixture-folder tests under ``tests/data``.
"""

from __future__ import annotations

from typing import Any

from mtlexport.data.base import MultiTaskDataset
from mtlexport.data.celeba import CelebAMaskHQ
from mtlexport.data.config import DataConfig
from mtlexport.data.factory import FactoryData
from mtlexport.data.labels import (
    IGNORE_INDEX,
    SPLITS,
    SYNTHETIC_ATTRIBUTES,
    SYNTHETIC_CLASSES,
    check_split,
)
from mtlexport.data.nyuv2 import NYUv2
from mtlexport.data.synthetic import SyntheticScenes, generate_split
from mtlexport.data.transforms import IMAGE_MEAN, IMAGE_STD, denormalize_image, normalize_image
from mtlexport.registry import Registry

DATASETS: Registry[type[MultiTaskDataset]] = Registry("dataset")
DATASETS.add("synthetic", SyntheticScenes)
DATASETS.add("nyuv2", NYUv2)
DATASETS.add("celebamask_hq", CelebAMaskHQ)
DATASETS.add("factory", FactoryData)  # your own data: data.factory names the function (mtlexport.data.factory)


def build_dataset(cfg: DataConfig, split: str) -> MultiTaskDataset:
    """The ``split`` ("train", "val" or "test") of the dataset ``cfg.name``."""
    return DATASETS.get(cfg.name).from_config(cfg, check_split(split))


def dataset_info(cfg: DataConfig) -> dict[str, Any]:
    """num_classes, class_names, attribute_names, label_keys, height and width of ``cfg``'s
    dataset, without loading or generating samples."""
    return DATASETS.get(cfg.name).info(cfg)


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "SPLITS",
    "SYNTHETIC_ATTRIBUTES",
    "SYNTHETIC_CLASSES",
    "CelebAMaskHQ",
    "DataConfig",
    "MultiTaskDataset",
    "NYUv2",
    "SyntheticScenes",
    "build_dataset",
    "dataset_info",
    "denormalize_image",
    "generate_split",
    "normalize_image",
]
