"""Fixture folders in exactly the real NYUD-MT and CelebAMask-HQ layouts (tiny images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

H, W = 20, 24  # source resolution of the fixture images (resized to 16x16 in the tests)
NYU_IDS = ("0003", "0010", "0042")
CELEBA_COUNT = 10
CELEBA_SIZE = (24, 24)  # images; masks are 12x12
# 40 names as in the real annotation file (Male is column 21, Smiling column 32).
CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_jpg(path: Path, rgb: tuple[int, int, int] | None = None, seed: int = 0,
              size: tuple[int, int] = (H, W)) -> None:
    """A ``size`` (default 20x24) JPEG: constant ``rgb`` or random noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if rgb is None:
        arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    else:
        arr = np.broadcast_to(np.array(rgb, np.uint8), (*size, 3)).copy()
    Image.fromarray(arr).save(path, quality=95)


def write_nyuv2(root: Path) -> Path:
    """3 samples: segmentation left half void / right half class 5 (on disk), depth 2.5 m with the
    top half invalid, normals (0.5, 0, -0.5) (not unit) with the bottom half invalid."""
    for name in ("images", "segmentation", "depth", "normals", "gt_sets"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for k, sid in enumerate(NYU_IDS):
        write_jpg(root / "images" / f"{sid}.jpg", rgb=(128, 128, 128))
        seg = np.zeros((H, W), np.uint8)
        seg[:, W // 2 :] = 5
        seg[0, 0] = 40
        Image.fromarray(seg).save(root / "segmentation" / f"{sid}.png")
        depth = np.full((H, W), 2.5 + k, np.float32)
        depth[: H // 2] = 0.0
        np.save(root / "depth" / f"{sid}.npy", depth)
        normals = np.zeros((H, W, 3), np.float32)
        normals[: H // 2] = (0.5, 0.0, -0.5)
        np.save(root / "normals" / f"{sid}.npy", normals)
    (root / "gt_sets" / "train.txt").write_text("\n".join(NYU_IDS[:2]) + "\n")
    (root / "gt_sets" / "val.txt").write_text(NYU_IDS[2] + "\n")
    (root / "gt_sets" / "test.txt").write_text(NYU_IDS[2] + "\n")
    return root


def celeba_values(n: int) -> list[int]:
    """Deterministic attribute values in {-1, 1} for image ``n``."""
    return [1 if (n + 3 * j) % 4 in (0, 1) else -1 for j in range(len(CELEBA_NAMES))]


def write_celeba(root: Path) -> Path:
    """10 images 24x24, masks 12x12 (half the resolution, as in the real data) with 0/1/2."""
    lines = [str(CELEBA_COUNT), " ".join(CELEBA_NAMES)]
    for n in range(CELEBA_COUNT):
        write_jpg(root / "CelebA-HQ-img" / f"{n}.jpg", seed=n, size=CELEBA_SIZE)
        mask = np.zeros((12, 12), np.uint8)
        mask[:4] = 1
        mask[4:, 3:9] = 2
        (root / "CelebA-HQ-segmask").mkdir(parents=True, exist_ok=True)
        np.save(root / "CelebA-HQ-segmask" / f"{n:05d}_mask.npy", mask)
        lines.append(f"{n}.jpg  " + " ".join(str(v) for v in celeba_values(n)))
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def nyuv2_root(tmp_path: Path) -> Path:
    return write_nyuv2(tmp_path / "nyuv2")


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    return write_celeba(tmp_path / "celeba")
