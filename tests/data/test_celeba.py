"""The CelebAMask-HQ loader on a fixture folder in the formatted layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtlexport.data import DataConfig, build_dataset
from mtlexport.data.celeba import ANNOTATION_FILE, CelebAMaskHQ, default_split
from mtlexport.errors import ConfigError, DataError

from .conftest import CELEBA_NAMES, celeba_values


def _cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(name="celebamask_hq", root=str(root), height=16, width=16, **kw)  # type: ignore[arg-type]


def test_default_split_rule() -> None:
    numbers = list(range(9, -1, -1))
    parts = [default_split(numbers, s) for s in ("train", "val", "test")]
    assert parts == [list(range(8)), [8], [9]]
    assert sum(len(default_split(list(range(101)), s)) for s in ("train", "val", "test")) == 101


def test_loads_attributes_and_masks(celeba_root: Path) -> None:
    ds = build_dataset(_cfg(celeba_root), "train")
    assert isinstance(ds, CelebAMaskHQ) and len(ds) == 8 and ds.numbers == list(range(8))
    assert ds.label_keys == ("segmentation", "male", "smiling") and ds.num_classes == 3
    male, smiling = CELEBA_NAMES.index("Male"), CELEBA_NAMES.index("Smiling")
    for i in range(8):
        s = ds[i]
        assert set(s) == {"image", "segmentation", "male", "smiling"}
        assert s["male"].dtype == torch.float32 and s["male"].shape == ()
        assert float(s["male"]) == float(celeba_values(i)[male] > 0)
        assert float(s["smiling"]) == float(celeba_values(i)[smiling] > 0)
    s = ds[0]
    assert s["image"].shape == (3, 16, 16) and s["segmentation"].shape == (16, 16)
    seg = s["segmentation"]  # 12x12 mask resized to 16x16 with nearest neighbours
    assert seg.dtype == torch.int64 and set(seg.unique().tolist()) == {0, 1, 2}
    assert bool((seg[:5] == 1).all()) and bool((seg[6:, 5:11] == 2).all())
    assert [len(build_dataset(_cfg(celeba_root), s)) for s in ("val", "test")] == [1, 1]
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["male"].shape == (4,)


def test_chosen_attributes_and_split_file(celeba_root: Path) -> None:
    (celeba_root / "splits").mkdir()
    (celeba_root / "splits" / "val.txt").write_text("3.jpg\n7\n")
    ds = build_dataset(_cfg(celeba_root, attributes=("eyeglasses", "Young")), "val")
    assert ds.numbers == [3, 7] and ds.attribute_names == ("eyeglasses", "young")
    assert float(ds[1]["young"]) == float(celeba_values(7)[CELEBA_NAMES.index("Young")] > 0)
    with pytest.raises(ConfigError, match="Wearing_Hat"):
        build_dataset(_cfg(celeba_root, attributes=("Wears_Hat",)), "train")
    (celeba_root / "splits" / "test.txt").write_text("12\n")
    with pytest.raises(DataError, match="image 12"):
        build_dataset(_cfg(celeba_root), "test")


def _rewrite_line(root: Path, index: int, text: str) -> None:
    path = root / ANNOTATION_FILE
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("index", "text", "needle"),
    [
        (5, "3.jpg 1 -1 1", "line 6: expected an image name and 40 values"),
        (5, "3.jpg " + " ".join(["0"] * 40), "line 6: expected"),
        (5, "three.jpg " + " ".join(["1"] * 40), "line 6: 'three.jpg' is not an image name"),
        (0, "ten", "line 1: expected the image count"),
        (0, "11", "says 11 images but lists 10"),
    ],
)
def test_malformed_annotation(celeba_root: Path, index: int, text: str, needle: str) -> None:
    _rewrite_line(celeba_root, index, text)
    with pytest.raises(DataError, match=needle) as err:
        build_dataset(_cfg(celeba_root), "train")
    assert ANNOTATION_FILE in str(err.value) and "\n" not in str(err.value)


def test_missing_files(celeba_root: Path, tmp_path: Path) -> None:
    (celeba_root / "CelebA-HQ-segmask" / "00004_mask.npy").unlink()
    with pytest.raises(DataError, match=r"00004_mask\.npy"):
        build_dataset(_cfg(celeba_root), "train")
    (celeba_root / ANNOTATION_FILE).unlink()
    with pytest.raises(DataError, match=ANNOTATION_FILE):
        build_dataset(_cfg(celeba_root), "train")
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(_cfg(tmp_path / "missing"), "train")


def test_bad_masks(celeba_root: Path) -> None:
    ds = build_dataset(_cfg(celeba_root), "train")
    np.save(celeba_root / "CelebA-HQ-segmask" / "00000_mask.npy", np.zeros((12, 12, 3), np.uint8))
    with pytest.raises(DataError, match=r"00000_mask\.npy has shape \(12, 12, 3\)"):
        ds[0]
    np.save(celeba_root / "CelebA-HQ-segmask" / "00001_mask.npy", np.full((12, 12), 7, np.uint8))
    with pytest.raises(DataError, match="outside 0"):
        ds[1]
