"""CelebAMask-HQ (formatted): face/hair/background segmentation plus binary attributes.

Layout under ``root``: ``CelebA-HQ-img/{n}.jpg``, ``CelebA-HQ-segmask/{n:05d}_mask.npy`` (HxW,
0 background, 1 hair, 2 skin) and ``CelebAMask-HQ-attribute-anno.txt`` (image count, a line of
40 attribute names, then ``{n}.jpg`` and 40 values in {-1, 1} per line).

Masks may have another resolution than their images (512 vs 1024 in the real data) but not
another aspect ratio (refused with a DataError).

Splits: ``splits/{train,val,test}.txt`` (image numbers or names, one per line) when that file
exists; otherwise the annotated images sorted by number are split 80 / 10 / 10 %: the first
``floor(0.8 n)`` are train, the next ``floor(0.1 n)`` val and the rest test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlexport.data.base import MultiTaskDataset, make_info, resolve_attributes, set_info
from mtlexport.data.config import DataConfig
from mtlexport.data.labels import CELEBA_CLASSES, CELEBA_DEFAULT_ATTRIBUTES, check_split
from mtlexport.data.readers import (
    check_target_size,
    read_lines,
    read_npy,
    read_numbered_lines,
    read_rgb,
    require_dir,
    require_files,
    require_root,
)
from mtlexport.data.transforms import normalize_image, resize_image, resize_segmentation
from mtlexport.errors import DataError

ANNOTATION_FILE = "CelebAMask-HQ-attribute-anno.txt"
_LAYOUT = f"CelebA-HQ-img/, CelebA-HQ-segmask/ and {ANNOTATION_FILE}"
_FIX_ANNO = "fix the line or restore the original annotation file"


def _image_number(name: str, where: str) -> int:
    stem = name[:-4] if name.lower().endswith(".jpg") else name
    if not stem.isdigit():
        raise DataError(f"{where}: {name!r} is not an image name like '123.jpg'; {_FIX_ANNO}")
    return int(stem)


def parse_annotations(path: Path) -> tuple[tuple[str, ...], dict[int, list[int]]]:
    """Attribute names and {image number: values in {-1, 1}} from the annotation file."""
    lines = read_numbered_lines(path)
    if len(lines) < 2 or not lines[0][1].isdigit():
        raise DataError(f"{path} line 1: expected the image count, then a line of attribute names; {_FIX_ANNO}")
    count, names = int(lines[0][1]), tuple(lines[1][1].split())
    table: dict[int, list[int]] = {}
    for lineno, line in lines[2:]:
        parts = line.split()
        where = f"{path} line {lineno}"
        if len(parts) != len(names) + 1 or any(v not in ("-1", "1") for v in parts[1:]):
            raise DataError(
                f"{where}: expected an image name and {len(names)} values in {{-1, 1}}, "
                f"got {len(parts) - 1} field(s) after the name; {_FIX_ANNO}"
            )
        number = _image_number(parts[0], where)
        if number in table:
            raise DataError(f"{where}: image {parts[0]} is listed twice; {_FIX_ANNO}")
        table[number] = [int(v) for v in parts[1:]]
    if len(table) != count:
        raise DataError(f"{path} says {count} images but lists {len(table)}; the file is truncated or edited")
    return names, table


def default_split(numbers: list[int], split: str) -> list[int]:
    """The documented 80 / 10 / 10 % split of sorted image numbers."""
    ordered = sorted(numbers)
    n_train, n_val = len(ordered) * 8 // 10, len(ordered) // 10
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(ordered))}
    lo, hi = bounds[split]
    return ordered[lo:hi]


class CelebAMaskHQ(MultiTaskDataset):
    """One split of CelebAMask-HQ: 3-class segmentation plus the chosen binary attributes."""

    dataset_name = "celebamask_hq"

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        height: int = 64,
        width: int = 64,
        attributes: tuple[str, ...] = (),
    ) -> None:
        self.split = check_split(split)
        self.root = require_root(root, "celebamask_hq", _LAYOUT)
        for sub in ("CelebA-HQ-img", "CelebA-HQ-segmask"):
            require_dir(self.root / sub, "CelebAMask-HQ folder", f"the formatted layout needs {_LAYOUT}")
        anno = self.root / ANNOTATION_FILE
        require_files([anno], f"the formatted layout needs {_LAYOUT}")
        names, table = parse_annotations(anno)
        chosen = resolve_attributes(tuple(attributes), names, CELEBA_DEFAULT_ATTRIBUTES, "CelebAMask-HQ")
        set_info(self, make_info(("segmentation",), CELEBA_CLASSES, tuple(a.lower() for a in chosen), height, width))
        self.numbers = self._split_numbers(table, split)
        columns = [names.index(a) for a in chosen]
        values = torch.tensor([[table[i][c] for c in columns] for i in self.numbers], dtype=torch.float32)
        self.targets = (values.view(len(self.numbers), len(columns)) > 0).float()
        require_files([p for i in self.numbers for p in self._paths(i)], "restore it or remove the image from the split")

    def _split_numbers(self, table: dict[int, list[int]], split: str) -> list[int]:
        split_file = self.root / "splits" / f"{split}.txt"
        if split_file.is_file():
            numbers = [_image_number(n, str(split_file)) for n in read_lines(split_file)]
            unknown = [n for n in numbers if n not in table]
            if unknown:
                raise DataError(f"{split_file} lists image {unknown[0]}, which {ANNOTATION_FILE} does not annotate")
        else:
            numbers = default_split(list(table), split)
        if not numbers:
            raise DataError(
                f"split {split!r} of {self.root} is empty ({len(table)} annotated images, split 80/10/10 %); "
                f"add images or a splits/{split}.txt file"
            )
        return numbers

    def _paths(self, number: int) -> tuple[Path, Path]:
        return (self.root / "CelebA-HQ-img" / f"{number}.jpg", self.root / "CelebA-HQ-segmask" / f"{number:05d}_mask.npy")

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> CelebAMaskHQ:
        """The ``split`` under ``cfg.root`` with ``cfg.attributes`` (default Male, Smiling)."""
        return cls(cfg.root, split, cfg.height, cfg.width, cfg.attributes)

    @classmethod
    def info(cls, cfg: DataConfig) -> dict[str, Any]:
        """3 classes and the configured attributes (lowercased); reads nothing."""
        attrs = tuple(a.lower() for a in (cfg.attributes or CELEBA_DEFAULT_ATTRIBUTES))
        return make_info(("segmentation",), CELEBA_CLASSES, attrs, cfg.height, cfg.width)

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        img_path, mask_path = self._paths(self.numbers[index])
        size = (self.height, self.width)
        mask = read_npy(mask_path, "HxW mask (0 background, 1 hair, 2 skin)", (2,))
        if not np.isin(mask, np.arange(len(CELEBA_CLASSES))).all():
            raise DataError(f"mask {mask_path} holds values outside 0 (background), 1 (hair), 2 (skin)")
        image = read_rgb(img_path)
        check_target_size(mask.shape, tuple(image.shape[-2:]), mask_path, img_path)  # other resolutions are normal
        out = {
            "image": normalize_image(resize_image(image, size)),
            "segmentation": resize_segmentation(torch.from_numpy(mask.astype(np.int64)), size),
        }
        for col, name in enumerate(self.attribute_names):
            out[name] = self.targets[index, col].clone()
        return out
