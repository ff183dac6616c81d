"""Synthetic scenes: determinism, label consistency, attributes, vectorisation and caching."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import mtlexport.data.synthetic as synthetic
from mtlexport.data import SYNTHETIC_ATTRIBUTES, SYNTHETIC_CLASSES, DataConfig, build_dataset, dataset_info
from mtlexport.data.render import TAN_HALF_FOV
from mtlexport.data.synthetic import SyntheticScenes, clutter_threshold, generate_split, visibility_threshold
from mtlexport.errors import ConfigError

N = 128


@pytest.fixture(scope="module")
def arrays() -> dict[str, torch.Tensor]:
    return generate_split(N, 64, 64, seed=0, split="train")


def test_shapes_and_dtypes(arrays: dict[str, torch.Tensor]) -> None:
    ds = build_dataset(DataConfig(num_val=5), "val")
    assert len(ds) == 5 and ds.num_classes == len(SYNTHETIC_CLASSES) == 6
    assert ds.class_names == SYNTHETIC_CLASSES and ds.attribute_names == SYNTHETIC_ATTRIBUTES
    sample = ds[0]
    assert set(sample) == {"image", *ds.label_keys}
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["segmentation"].shape == (64, 64) and sample["segmentation"].dtype == torch.int64
    assert sample["depth"].shape == (1, 64, 64) and sample["depth"].dtype == torch.float32
    assert sample["normals"].shape == (3, 64, 64) and sample["normals"].dtype == torch.float32
    for name in SYNTHETIC_ATTRIBUTES:
        assert sample[name].shape == () and sample[name].dtype == torch.float32
    assert ds[-1]["image"].equal(ds[4]["image"])
    with pytest.raises(IndexError):
        ds[5]
    batch = next(iter(DataLoader(ds, batch_size=5)))
    direct = ds.get_batch(torch.arange(5))
    assert batch.keys() == direct.keys() and all(torch.equal(batch[k], direct[k]) for k in batch)
    assert dataset_info(DataConfig(num_val=5)) == {
        "num_classes": ds.num_classes, "class_names": ds.class_names, "attribute_names": ds.attribute_names,
        "label_keys": ds.label_keys, "height": 64, "width": 64,
    }  # fmt: skip


def test_same_seed_is_bit_identical_and_independent_of_batching(arrays: dict[str, torch.Tensor]) -> None:
    first = generate_split(70, 32, 32, seed=0, split="train")
    again = generate_split(70, 32, 32, seed=0, split="train")
    prefix = generate_split(7, 32, 32, seed=0, split="train", num_threads=None)
    for key, value in first.items():
        assert torch.equal(value, again[key]), key
        assert torch.equal(value[:7], prefix[key]), key


def test_seeds_and_splits_differ(arrays: dict[str, torch.Tensor]) -> None:
    other_seed = generate_split(16, 64, 64, seed=1, split="train")["image"]
    assert not torch.equal(other_seed, arrays["image"][:16])
    flat = {s: generate_split(64, 32, 32, seed=0, split=s)["image"].flatten(1) for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        same = (flat[a][:, None] == flat[b][None]).all(-1)
        assert not same.any(), f"{a} and {b} share an image"


def test_label_consistency(arrays: dict[str, torch.Tensor]) -> None:
    seg, depth = arrays["segmentation"].long(), arrays["depth"]
    normals = arrays["normals"].float()
    assert int(seg.min()) >= 0 and int(seg.max()) < len(SYNTHETIC_CLASSES)
    assert torch.isfinite(depth).all() and bool((depth > 0).all())
    assert torch.allclose(normals.norm(dim=1), torch.ones(()), atol=2e-3)
    # Visible surfaces face the camera: normal . viewing ray < 0 (ray through each pixel centre).
    u = ((torch.arange(64) + 0.5) / 64 * 2 - 1) * TAN_HALF_FOV
    ray = torch.stack([u.view(1, 64).expand(64, 64), -u.view(64, 1).expand(64, 64), torch.ones(64, 64)])
    facing = (normals * ray).sum(1) < 1e-3
    assert facing.float().mean() > 0.999
    # Floor normals in the camera frame are (0, cos pitch, -sin pitch) with pitch in [0, 0.3].
    floor = normals.permute(0, 2, 3, 1)[seg == SYNTHETIC_CLASSES.index("floor")]
    assert torch.allclose(floor[:, 0], torch.zeros(())) and bool((floor[:, 1] >= math.cos(0.3) - 1e-3).all())
    # Every class occurs.
    assert torch.bincount(seg.flatten(), minlength=6).min() > 0


def test_attributes_agree_with_labels(arrays: dict[str, torch.Tensor]) -> None:
    attrs = arrays["attributes"].bool()
    seg = arrays["segmentation"]
    sphere_pixels = (seg == SYNTHETIC_CLASSES.index("sphere")).flatten(1).sum(1)
    has_sphere = attrs[:, SYNTHETIC_ATTRIBUTES.index("has_sphere")]
    assert torch.equal(has_sphere, sphere_pixels >= visibility_threshold(64, 64))
    cluttered = attrs[:, SYNTHETIC_ATTRIBUTES.index("is_cluttered")]
    visible = arrays["visible_objects"].long()
    assert torch.equal(cluttered, visible >= clutter_threshold(4))
    object_classes = torch.stack([(seg == c).flatten(1).sum(1) >= visibility_threshold(64, 64) for c in (3, 4, 5)])
    assert bool((visible >= object_classes.sum(0)).all())  # a visible class needs a visible object
    rate = attrs.float().mean(0)
    assert bool(((rate > 0.3) & (rate < 0.7)).all()), rate


def test_attribute_selection() -> None:
    ds = build_dataset(DataConfig(num_train=3, attributes=("light_from_left",)), "train")
    assert ds.label_keys == ("segmentation", "depth", "normals", "light_from_left")
    assert "has_sphere" not in ds[0]
    with pytest.raises(ConfigError, match="has_sphere"):
        build_dataset(DataConfig(num_train=3, attributes=("has_cube",)), "train")


def test_generation_is_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed sanity without timing: whole batches of scenes per render call."""
    calls: list[int] = []
    real = synthetic.render

    def counting(params, height, width):  # noqa: ANN001, ANN202
        calls.append(int(params.obj_type.shape[0]))
        return real(params, height, width)

    monkeypatch.setattr(synthetic, "render", counting)
    threads = torch.get_num_threads()
    out = generate_split(100, 32, 32, split="test")
    assert torch.get_num_threads() == threads  # the render-thread setting is restored
    per_batch = max(1, synthetic._PIXEL_BUDGET // (4 * 32 * 32))
    assert sum(calls) == 100 and len(calls) <= math.ceil(100 / min(per_batch, synthetic.CHUNK)) + 1
    assert out["image"].shape == (100, 3, 32, 32)


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = SyntheticScenes("val", 10, 32, 32, seed=3, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [first.cache_path.name] and first.cache_path.name.startswith("synthetic-val-")

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("regenerated although a cache file exists")

    monkeypatch.setattr(synthetic, "generate_split", fail)
    second = SyntheticScenes("val", 10, 32, 32, seed=3, cache_dir=tmp_path)
    assert all(torch.equal(first.arrays[k], second.arrays[k]) for k in first.arrays)
    monkeypatch.undo()
    other = SyntheticScenes("val", 10, 32, 32, seed=4, cache_dir=tmp_path)
    assert other.cache_path != first.cache_path and len(list(tmp_path.iterdir())) == 2
    first.cache_path.write_bytes(b"not a torch file")  # a corrupt cache is regenerated
    third = SyntheticScenes("val", 10, 32, 32, seed=3, cache_dir=tmp_path)
    assert torch.equal(third.arrays["image"], first.arrays["image"])
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
