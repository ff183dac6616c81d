"""Every registered dataset honours the sample contract and agrees with ``dataset_info``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mtlexport.data import DATASETS, IGNORE_INDEX, DataConfig, build_dataset, dataset_info

from .conftest import write_celeba, write_nyuv2

# How to get a 16x16 config for each registered dataset; a new dataset must add an entry.
CONFIGS = {
    "synthetic": lambda tmp: DataConfig(height=16, width=16, num_train=4),
    "nyuv2": lambda tmp: DataConfig(name="nyuv2", root=str(write_nyuv2(tmp / "n")), height=16, width=16),
    "celebamask_hq": lambda tmp: DataConfig(
        name="celebamask_hq", root=str(write_celeba(tmp / "c")), height=16, width=16
    ),
    "factory": lambda tmp: DataConfig(name="factory", factory="tests.data.user_data:splits", kwargs={"size": 16},
                                      height=16, width=16),
}


@pytest.mark.parametrize("name", DATASETS.names())
def test_sample_contract(name: str, tmp_path: Path) -> None:
    cfg = CONFIGS[name](tmp_path)
    ds = build_dataset(cfg, "train")
    info = dataset_info(cfg)
    assert {k: getattr(ds, k) for k in info} == info
    assert ds.label_keys == tuple(k for k in ("segmentation", "depth", "normals") if k in ds.label_keys) + tuple(
        ds.attribute_names
    )
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert set(batch) == {"image", *ds.label_keys}
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == torch.float32
    if "segmentation" in batch:
        seg = batch["segmentation"]
        assert seg.shape == (2, 16, 16) and seg.dtype == torch.int64
        assert bool((((seg >= 0) & (seg < ds.num_classes)) | (seg == IGNORE_INDEX)).all())
        assert ds.num_classes == len(ds.class_names)
    if "depth" in batch:
        depth = batch["depth"]
        assert depth.shape == (2, 1, 16, 16) and depth.dtype == torch.float32 and bool((depth >= 0).all())
    if "normals" in batch:
        normals = batch["normals"]
        assert normals.shape == (2, 3, 16, 16) and normals.dtype == torch.float32
        norm = normals.norm(dim=1)
        assert bool(((norm - 1).abs() < 1e-3).logical_or(norm == 0).all())
    for name_ in ds.attribute_names:
        value = batch[name_]
        assert value.shape == (2,) and value.dtype == torch.float32 and bool(((value == 0) | (value == 1)).all())
