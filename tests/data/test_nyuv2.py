"""The NYUv2 loader on a fixture folder in the NYUD-MT layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtlexport.data import IGNORE_INDEX, IMAGE_MEAN, IMAGE_STD, DataConfig, build_dataset
from mtlexport.data.nyuv2 import NYUv2
from mtlexport.errors import ConfigError, DataError

from .conftest import H, W


def _cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(name="nyuv2", root=str(root), height=16, width=16, **kw)  # type: ignore[arg-type]


def test_loads_and_resizes(nyuv2_root: Path) -> None:
    ds = build_dataset(_cfg(nyuv2_root), "train")
    assert isinstance(ds, NYUv2) and len(ds) == 2 and ds.num_classes == 40
    assert ds.label_keys == ("segmentation", "depth", "normals") and ds.attribute_names == ()
    assert len(build_dataset(_cfg(nyuv2_root), "val")) == 1
    s = ds[1]
    assert set(s) == {"image", "segmentation", "depth", "normals"}
    assert s["image"].shape == (3, 16, 16) and s["image"].dtype == torch.float32
    expected = (128 / 255 - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)
    assert torch.allclose(s["image"].mean((1, 2)), expected, atol=0.02)
    seg = s["segmentation"]
    assert seg.dtype == torch.int64 and seg.shape == (16, 16)
    assert set(seg[:, :8].unique().tolist()) <= {IGNORE_INDEX, 39}  # void, or the corner labelled 40
    assert bool((seg[:, 8:] == 4).all())  # on-disk class 5 -> 4
    assert bool((seg[1:, :8] == IGNORE_INDEX).all())
    depth = s["depth"]
    assert depth.shape == (1, 16, 16) and depth.dtype == torch.float32
    assert bool((depth[0, :8] == 0).all()) and torch.allclose(depth[0, 8:], torch.tensor(3.5))
    normals = s["normals"]
    assert normals.shape == (3, 16, 16)
    unit = torch.tensor([2**-0.5, 0.0, -(2**-0.5)])
    assert torch.allclose(normals[:, :8].permute(1, 2, 0), unit, atol=1e-6)
    assert bool((normals[:, 8:] == 0).all())
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["depth"].shape == (2, 1, 16, 16)


def test_native_size_is_kept(nyuv2_root: Path) -> None:
    ds = NYUv2(nyuv2_root, "test", height=H, width=W)
    s = ds[0]
    assert s["segmentation"].shape == (H, W) and int(s["segmentation"][0, 0]) == 39


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        build_dataset(_cfg(tmp_path / "nope"), "train")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="data.root"):
        build_dataset(DataConfig(name="nyuv2"), "train")


def test_missing_file_named(nyuv2_root: Path) -> None:
    (nyuv2_root / "depth" / "0010.npy").unlink()
    with pytest.raises(DataError, match=r"0010\.npy") as err:
        build_dataset(_cfg(nyuv2_root), "train")
    assert "\n" not in str(err.value)
    (nyuv2_root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(DataError, match=r"val\.txt"):
        build_dataset(_cfg(nyuv2_root), "val")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda r: np.save(r / "normals" / "0003.npy", np.zeros((H, W), np.float32)), "expected HxWx3"),
        (lambda r: np.save(r / "depth" / "0003.npy", np.zeros((2, H, W), np.float32)), "expected HxW"),
        (lambda r: (r / "depth" / "0003.npy").write_bytes(b"garbage"), "cannot read array"),
        (lambda r: (r / "images" / "0003.jpg").write_bytes(b"garbage"), "cannot decode image"),
        (lambda r: np.save(r / "depth" / "0003.npy", np.array(["a"] * 4)), "not numeric"),
    ],
)
def test_malformed_files(nyuv2_root: Path, damage, needle: str) -> None:  # noqa: ANN001
    damage(nyuv2_root)
    ds = build_dataset(_cfg(nyuv2_root), "train")
    with pytest.raises(DataError, match=needle) as err:
        ds[0]
    assert "0003" in str(err.value) and "\n" not in str(err.value)


def test_label_out_of_range(nyuv2_root: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((H, W), 41, np.uint8)).save(nyuv2_root / "segmentation" / "0003.png")
    with pytest.raises(DataError, match="label 41"):
        build_dataset(_cfg(nyuv2_root), "train")[0]


def test_attributes_rejected(nyuv2_root: Path) -> None:
    with pytest.raises(ConfigError, match="no binary attributes"):
        build_dataset(_cfg(nyuv2_root, attributes=("male",)), "train")
