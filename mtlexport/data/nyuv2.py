"""NYUv2 in the NYUD-MT layout: segmentation (40 classes), depth and surface normals.

Layout under ``root``: ``images/{id}.jpg``, ``segmentation/{id}.png`` (uint8, 0 = void,
1..40 = classes), ``depth/{id}.npy`` (HxW float, metres, <= 0 or non-finite = invalid),
``normals/{id}.npy`` (HxWx3 in [-1, 1], zero = invalid) and ``gt_sets/{split}.txt``.
Everything is resized to the configured size (see ``mtlexport.data.transforms``). Labels must
have their image's size: another aspect ratio is refused (DataError), another resolution is
resized with one warning per split.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlexport.data.base import DENSE_KEYS, MultiTaskDataset, make_info, set_info
from mtlexport.data.config import DataConfig
from mtlexport.data.labels import IGNORE_INDEX, NYUV2_CLASSES, check_split
from mtlexport.data.readers import (
    check_target_size,
    read_label_png,
    read_lines,
    read_npy,
    read_rgb,
    require_dir,
    require_files,
    require_root,
)
from mtlexport.data.transforms import normalize_image, resize_depth, resize_image, resize_normals, resize_segmentation
from mtlexport.errors import ConfigError, DataError, MtlexportWarning

_FIX = "restore it, or remove its id from the gt_sets split file"
_LAYOUT = "images/, segmentation/, depth/, normals/ and gt_sets/"


class NYUv2(MultiTaskDataset):
    """One split of NYUv2 (NYUD-MT layout) with segmentation, depth and normals."""

    dataset_name = "nyuv2"

    def __init__(self, root: str | Path | None, split: str = "train", height: int = 64, width: int = 64) -> None:
        self.split = check_split(split)
        self.root = require_root(root, "nyuv2", _LAYOUT)
        set_info(self, make_info(DENSE_KEYS, NYUV2_CLASSES, (), height, width))
        for sub in ("images", "segmentation", "depth", "normals", "gt_sets"):
            require_dir(self.root / sub, "NYUv2 folder", f"the NYUD-MT layout needs {_LAYOUT}")
        split_file = self.root / "gt_sets" / f"{split}.txt"
        require_files([split_file], f"list the {split} ids there, one per line")
        self.ids = read_lines(split_file)
        if not self.ids:
            raise DataError(f"split file {split_file} lists no ids; add one id per line")
        require_files([p for i in self.ids for p in self._paths(i)], _FIX)
        self._warned = False

    def _paths(self, sample_id: str) -> tuple[Path, Path, Path, Path]:
        r = self.root
        return (r / "images" / f"{sample_id}.jpg", r / "segmentation" / f"{sample_id}.png",
                r / "depth" / f"{sample_id}.npy", r / "normals" / f"{sample_id}.npy")  # fmt: skip

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> NYUv2:
        """The ``split`` under ``cfg.root`` at ``cfg.height`` x ``cfg.width``."""
        if cfg.attributes:
            raise ConfigError(f"nyuv2 has no binary attributes; remove data.attributes {list(cfg.attributes)}")
        return cls(cfg.root, split, cfg.height, cfg.width)

    @classmethod
    def info(cls, cfg: DataConfig) -> dict[str, Any]:
        """40 classes, dense tasks only; reads nothing."""
        return make_info(DENSE_KEYS, NYUV2_CLASSES, (), cfg.height, cfg.width)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        img_path, seg_path, depth_path, normals_path = self._paths(self.ids[index])
        size = (self.height, self.width)
        image = read_rgb(img_path)
        seg = read_label_png(seg_path)
        if seg.max(initial=0) > len(NYUV2_CLASSES):
            raise DataError(
                f"{seg_path} holds label {int(seg.max())}; expected 0 (void) or 1..{len(NYUV2_CLASSES)}"
            )
        labels = torch.from_numpy(seg.astype(np.int64))
        labels = torch.where(labels == 0, IGNORE_INDEX, labels - 1)
        depth = read_npy(depth_path, "HxW depth", (2, 3))
        if depth.ndim == 3:  # tolerate HxWx1
            if depth.shape[2] != 1:
                raise DataError(f"array {depth_path} has shape {depth.shape}; expected HxW depth")
            depth = depth[..., 0]
        normals = read_npy(normals_path, "HxWx3 normals", (3,), channels=3)
        hw = tuple(image.shape[-2:])
        resized = [p.name for p, shape in ((seg_path, seg.shape), (depth_path, depth.shape),
                                           (normals_path, normals.shape)) if check_target_size(shape, hw, p, img_path)]
        if resized and not self._warned:
            self._warned = True
            warnings.warn(MtlexportWarning(
                f"nyuv2 {self.split}: {resized[0]} is not the size of its image {img_path.name} "
                f"({hw[0]}x{hw[1]}); labels of another resolution are resized (warned once per split)"), stacklevel=2)
        return {
            "image": normalize_image(resize_image(image, size)),
            "segmentation": resize_segmentation(labels, size),
            "depth": resize_depth(torch.from_numpy(depth.astype(np.float32)), size),
            "normals": resize_normals(torch.from_numpy(normals.astype(np.float32)).permute(2, 0, 1), size),
        }
