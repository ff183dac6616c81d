"""Synthetic multi-task scenes: the default dataset, rendered in memory and optionally cached.

Scenes are drawn in chunks of ``CHUNK`` from a generator seeded by (seed, split, chunk), so a
split is bit-identical for the same seed, independent of batching, and the splits differ.
Attributes are derived from the rendered labels:

- ``has_sphere``: at least ``visibility_threshold(h, w)`` pixels (0.5% of the image) are sphere.
- ``is_cluttered``: at least ``clutter_threshold(max_objects)`` objects each show that many pixels.
- ``light_from_left``: the point light is left of the camera (world x < 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlexport.data.base import DENSE_KEYS, MultiTaskDataset, make_info, resolve_attributes, set_info
from mtlexport.data.config import DataConfig
from mtlexport.data.labels import SYNTHETIC_ATTRIBUTES, SYNTHETIC_CLASSES, check_split
from mtlexport.data.render import FIRST_OBJECT_CLASS, SPHERE, SceneParams, render, sample_params
from mtlexport.data.transforms import normalize_image
from mtlexport.errors import DataError

GENERATOR_VERSION = 1
CHUNK = 64  # scenes per random stream; fixed so that data never depends on batching
_PIXEL_BUDGET = 1 << 19  # (scene, object slot, pixel) triples per render call: cache-sized
_ARRAYS = ("image", "segmentation", "depth", "normals", "attributes", "visible_objects")


def visibility_threshold(height: int, width: int) -> int:
    """Pixels an object (or the sphere class) must show to count as visible."""
    return max(1, round(0.005 * height * width))


def clutter_threshold(max_objects: int) -> int:
    """Visible objects that make a scene ``is_cluttered`` (3 for the default 4 objects)."""
    return max(2, (max_objects + 2) // 2)


def _chunk_seed(seed: int, split: str, chunk: int) -> int:
    digest = hashlib.sha256(f"mtlexport-synthetic:{seed}:{split}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _draw_chunk(seed: int, split: str, chunk: int, max_objects: int, h: int, w: int) -> tuple[SceneParams, Tensor]:
    """Scene parameters and pixel noise of one chunk, from that chunk's own generator."""
    gen = torch.Generator().manual_seed(_chunk_seed(seed, split, chunk))
    params = sample_params(CHUNK, max_objects, gen)
    noise = torch.randn(CHUNK, 3, h, w, generator=gen) * params.noise_std[:, None, None, None]
    return params, noise


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_split(
    num: int,
    height: int,
    width: int,
    seed: int = 0,
    split: str = "train",
    max_objects: int = 4,
    num_threads: int | None = 1,
) -> dict[str, Tensor]:
    """Render ``num`` scenes of ``split``. Returns compact arrays: ``image`` uint8 (N,3,H,W),
    ``segmentation`` uint8 (N,H,W), ``depth`` float32 (N,H,W), ``normals`` float16 (N,3,H,W),
    ``attributes`` uint8 (N, len(SYNTHETIC_ATTRIBUTES)) and ``visible_objects`` int16 (N,).

    ``num_threads``: torch intra-op threads while rendering (restored afterwards; None keeps
    torch's setting). One thread is the default: the small cache-sized batches gain little from
    more, and on a shared, oversubscribed CPU torch's thread barriers slow them down ~10x.
    The result does not depend on it.
    """
    check_split(split)
    with _torch_threads(num_threads):
        return _generate(num, height, width, seed, split, max_objects)


def _generate(num: int, height: int, width: int, seed: int, split: str, max_objects: int) -> dict[str, Tensor]:
    out = {
        "image": torch.empty(num, 3, height, width, dtype=torch.uint8),
        "segmentation": torch.empty(num, height, width, dtype=torch.uint8),
        "depth": torch.empty(num, height, width, dtype=torch.float32),
        "normals": torch.empty(num, 3, height, width, dtype=torch.float16),
        "attributes": torch.empty(num, len(SYNTHETIC_ATTRIBUTES), dtype=torch.uint8),
        "visible_objects": torch.empty(num, dtype=torch.int16),
    }
    per_batch = max(1, _PIXEL_BUDGET // (max_objects * height * width))
    group = max(1, per_batch // CHUNK)  # chunks drawn together
    vis, clutter = visibility_threshold(height, width), clutter_threshold(max_objects)
    num_chunks = -(-num // CHUNK)
    for first in range(0, num_chunks, group):
        chunks = range(first, min(first + group, num_chunks))
        drawn = [_draw_chunk(seed, split, c, max_objects, height, width) for c in chunks]
        params, noise = SceneParams.cat([d[0] for d in drawn]), torch.cat([d[1] for d in drawn])
        base = first * CHUNK
        for start in range(0, min(num - base, len(noise)), per_batch):
            stop = min(start + per_batch, num - base, len(noise))
            p = params.select(slice(start, stop))
            r = render(p, height, width)
            rows = slice(base + start, base + stop)
            rgb = (r["rgb"] + noise[start:stop]).clamp_(0, 1)
            out["image"][rows] = (rgb * 255).round_().to(torch.uint8)
            out["segmentation"][rows] = r["segmentation"]
            out["depth"][rows] = r["depth"]
            out["normals"][rows] = r["normals"].to(torch.float16)
            visible = (r["instance_pixels"] >= vis).sum(1)
            sphere_pixels = (r["segmentation"] == FIRST_OBJECT_CLASS + SPHERE).sum((1, 2))
            attrs = torch.stack([sphere_pixels >= vis, visible >= clutter, p.light_pos[:, 0] < 0], dim=1)
            out["attributes"][rows] = attrs.to(torch.uint8)
            out["visible_objects"][rows] = visible.to(torch.int16)
    return out


def cache_key(num: int, height: int, width: int, seed: int, split: str, max_objects: int) -> str:
    """Hash of everything that determines a generated split (the cache file's name)."""
    key = {"version": GENERATOR_VERSION, "chunk": CHUNK, "num": num, "height": height, "width": width,
           "seed": seed, "split": split, "max_objects": max_objects}  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _load_cache(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, Tensor] | None:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache is regenerated
        return None
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k), Tensor) or tuple(data[k].shape) != shape for k, shape in expected.items()
    ):
        return None
    return {k: data[k] for k in expected}


def _save_cache(path: Path, arrays: dict[str, Tensor]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(arrays, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise DataError(f"cannot write synthetic data cache {path} ({exc.strerror}); fix data.cache_dir") from None


class SyntheticScenes(MultiTaskDataset):
    """Procedural rooms with spheres, boxes and cylinders; every dense task plus attributes."""

    dataset_name = "synthetic"

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 2048,
        height: int = 64,
        width: int = 64,
        seed: int = 0,
        max_objects: int = 4,
        attributes: tuple[str, ...] = (),
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.split = check_split(split)
        self.seed, self.max_objects = seed, max_objects
        info = self._info(attributes, height, width)
        set_info(self, info)
        self._attr_index = [SYNTHETIC_ATTRIBUTES.index(a) for a in self.attribute_names]
        args = (num_samples, height, width, seed, split, max_objects)
        self.cache_path = (
            Path(cache_dir) / f"synthetic-{split}-{cache_key(*args)}.pt" if cache_dir is not None else None
        )
        arrays = None
        if self.cache_path is not None and self.cache_path.is_file():
            arrays = _load_cache(self.cache_path, self._shapes(num_samples, height, width))
        if arrays is None:
            arrays = generate_split(*args)
            if self.cache_path is not None:
                _save_cache(self.cache_path, arrays)
        self.arrays = arrays

    @staticmethod
    def _shapes(num: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
        return {"image": (num, 3, h, w), "segmentation": (num, h, w), "depth": (num, h, w),
                "normals": (num, 3, h, w), "attributes": (num, len(SYNTHETIC_ATTRIBUTES)),
                "visible_objects": (num,)}  # fmt: skip

    @staticmethod
    def _info(attributes: tuple[str, ...], height: int, width: int) -> dict[str, Any]:
        names = resolve_attributes(tuple(attributes), SYNTHETIC_ATTRIBUTES, SYNTHETIC_ATTRIBUTES, "synthetic")
        return make_info(DENSE_KEYS, SYNTHETIC_CLASSES, names, height, width)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> SyntheticScenes:
        """The ``split`` with ``cfg.num_<split>`` scenes."""
        num = getattr(cfg, f"num_{check_split(split)}")
        return cls(split, num, cfg.height, cfg.width, cfg.seed, cfg.max_objects, cfg.attributes, cfg.cache_dir)

    @classmethod
    def info(cls, cfg: DataConfig) -> dict[str, Any]:
        """Metadata of the synthetic scenes under ``cfg`` (renders nothing)."""
        return cls._info(cfg.attributes, cfg.height, cfg.width)

    def __len__(self) -> int:
        return int(self.arrays["image"].shape[0])

    def get_batch(self, index: Tensor | slice) -> dict[str, Tensor]:
        """Samples ``index`` already collated: the same as default-collating ``self[i]``."""
        a = self.arrays
        normals = a["normals"][index].to(torch.float32, copy=True)
        nx, ny, nz = normals.unbind(-3)  # elementwise: far faster than norm() over dim -3
        normals *= torch.rsqrt(nx * nx + ny * ny + nz * nz).unsqueeze(-3)  # stored as float16: renormalise
        out = {
            "image": normalize_image(a["image"][index]),
            "segmentation": a["segmentation"][index].long(),
            "depth": a["depth"][index].unsqueeze(-3),
            "normals": normals,
        }
        attrs = a["attributes"][index].float()
        for name, col in zip(self.attribute_names, self._attr_index):
            out[name] = attrs[..., col]
        return out

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        return self.get_batch(index % n)
