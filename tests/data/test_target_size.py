"""A label whose size differs from its image: another aspect ratio is refused (it cannot belong
to that image), another resolution is resized with one warning per split (NYUv2) or silently
where the dataset documents it (CelebAMask-HQ masks)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from mtlexport.data import build_dataset
from mtlexport.data.config import DataConfig
from mtlexport.errors import DataError, MtlexportWarning

from .conftest import NYU_IDS


def _nyu(root: Path, split: str = "train"):  # noqa: ANN202
    return build_dataset(DataConfig(name="nyuv2", root=str(root), height=16, width=16), split)


def test_nyuv2_label_of_another_aspect_ratio_is_refused(nyuv2_root: Path) -> None:
    np.save(nyuv2_root / "depth" / f"{NYU_IDS[0]}.npy", np.full((20, 20), 2.0, np.float32))  # image is 20x24
    with pytest.raises(DataError) as info:
        _nyu(nyuv2_root)[0]
    text = str(info.value)
    assert f"{NYU_IDS[0]}.npy is 20x20 but its image {NYU_IDS[0]}.jpg is 20x24" in text and "\n" not in text


def test_nyuv2_label_of_another_resolution_warns_once(nyuv2_root: Path) -> None:
    for sid in NYU_IDS[:2]:
        np.save(nyuv2_root / "depth" / f"{sid}.npy", np.full((10, 12), 2.0, np.float32))  # half resolution
    ds = _nyu(nyuv2_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = [ds[0], ds[1]]
    assert [w.category for w in caught] == [MtlexportWarning]
    assert "resized" in str(caught[0].message) and f"{NYU_IDS[0]}.npy" in str(caught[0].message)
    assert samples[0]["depth"].shape == (1, 16, 16)


def test_same_size_labels_load_silently(nyuv2_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _nyu(nyuv2_root)[0]


def test_celeba_mask_of_another_aspect_ratio_is_refused(celeba_root: Path) -> None:
    np.save(celeba_root / "CelebA-HQ-segmask" / "00000_mask.npy", np.zeros((12, 6), np.uint8))
    ds = build_dataset(DataConfig(name="celebamask_hq", root=str(celeba_root), height=16, width=16), "train")
    with pytest.raises(DataError, match=r"00000_mask.npy is 12x6 but its image 0.jpg is 24x24"):
        ds[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # half-resolution masks (as in the real data) are normal
        ds[1]
