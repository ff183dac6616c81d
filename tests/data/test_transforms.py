"""Normalisation and label-aware resizing."""

from __future__ import annotations

import torch

from mtlexport.data.transforms import (
    IGNORE_INDEX,
    denormalize_image,
    normalize_image,
    resize_depth,
    resize_image,
    resize_normals,
    resize_segmentation,
)


def test_normalize_round_trip() -> None:
    img = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = normalize_image(img)
    assert x.dtype == torch.float32
    assert torch.allclose(denormalize_image(x), img.float() / 255, atol=1e-6)
    assert torch.allclose(normalize_image(img[0]), x[0])


def test_resize_image_keeps_constant() -> None:
    img = torch.full((3, 20, 24), 77, dtype=torch.uint8)
    out = resize_image(img, (16, 16))
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8 and bool((out == 77).all())


def test_resize_segmentation_is_nearest() -> None:
    labels = torch.randint(0, 5, (20, 24), generator=torch.Generator().manual_seed(0))
    labels[:5] = IGNORE_INDEX
    out = resize_segmentation(labels, (16, 16))
    assert out.dtype == torch.int64 and out.shape == (16, 16)
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())


def test_resize_depth_keeps_invalid_invalid() -> None:
    depth = torch.rand(40, 48, generator=torch.Generator().manual_seed(0)) * 3 + 1
    depth[5:17, 9:30] = 0.0
    depth[30, 40] = float("nan")
    out = resize_depth(depth, (16, 16))[0]
    # An output pixel is valid exactly when its nearest source pixel is.
    rows = ((torch.arange(16) + 0.5) * 40 / 16).long()
    cols = ((torch.arange(16) + 0.5) * 48 / 16).long()
    src_valid = torch.isfinite(depth) & (depth > 0)
    assert torch.equal(out > 0, src_valid[rows][:, cols])
    assert torch.isfinite(out).all() and float(out[out > 0].min()) >= 1.0 and float(out.max()) <= 4.0


def test_resize_normals_unit_or_zero() -> None:
    normals = torch.randn(3, 20, 24, generator=torch.Generator().manual_seed(0))
    normals[:, :6] = 0.0
    out = resize_normals(normals, (16, 16))
    norm = out.norm(dim=0)
    valid = norm > 0
    assert torch.allclose(norm[valid], torch.ones_like(norm[valid]), atol=1e-5)
    assert not valid[:4].any() and valid[6:].all()
