"""Image normalisation and label-aware resizing shared by the loaders.

Resizing keeps invalid pixels invalid: depth and normals are averaged only over valid source
pixels (normalised convolution) and an output pixel is valid exactly when its nearest source
pixel is valid. Segmentation is resized with nearest neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.data.labels import IGNORE_INDEX

#: Per-channel RGB mean and standard deviation (ImageNet) applied to images in [0, 1].
IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "denormalize_image",
    "normalize_image",
    "resize_depth",
    "resize_image",
    "resize_normals",
    "resize_segmentation",
]


def _stats(like: Tensor) -> tuple[Tensor, Tensor]:
    shape = (3, 1, 1) if like.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32).view(shape)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32).view(shape)
    return mean, std


def normalize_image(image: Tensor) -> Tensor:
    """uint8 (0..255) or float (0..1) RGB, 3xHxW or Nx3xHxW -> normalised float32."""
    mean, std = _stats(image)
    if image.dtype == torch.uint8:
        return image.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)
    return (image.float() - mean) / std


def denormalize_image(image: Tensor) -> Tensor:
    """Invert ``normalize_image``: float32 RGB in [0, 1] (clamped)."""
    mean, std = _stats(image)
    return (image.float() * std + mean).clamp(0.0, 1.0)


def _resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize CxHxW float; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x[None], size=size, mode="nearest-exact")[0]
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 3xHxW -> uint8 3x``size`` (bilinear, antialiased)."""
    out = _resize(image.float(), size, "bilinear")
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resize_segmentation(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Integer HxW labels -> int64 ``size`` (nearest neighbour, so void stays void)."""
    out = _resize(labels[None].float(), size, "nearest")[0]
    return out.round_().to(torch.int64)


def _resize_masked(values: Tensor, valid: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Average ``values`` (CxHxW) over ``valid`` (HxW) source pixels; returns (values, valid)."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values * valid, valid
    m = valid[None].float()
    num = _resize(values * m, size, "bilinear")
    den = _resize(m, size, "bilinear")
    # nearest-exact picks one of the bilinear taps, so den > 0 wherever this mask is set.
    out_valid = (_resize(m, size, "nearest")[0] > 0.5) & (den[0] > 1e-6)
    out = torch.where(out_valid, num / den.clamp_min(1e-6), torch.zeros_like(num))
    return out, out_valid


def resize_depth(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """HxW depth (non-positive or non-finite = invalid) -> float32 1x``size``, 0 = invalid."""
    d = depth.float()
    valid = torch.isfinite(d) & (d > 0)
    d = torch.where(valid, d, torch.zeros_like(d))
    out, _ = _resize_masked(d[None], valid, size)
    return out


def resize_normals(normals: Tensor, size: tuple[int, int]) -> Tensor:
    """3xHxW normals (zero or non-finite = invalid) -> unit float32 3x``size``, 0 = invalid."""
    n = normals.float()
    finite = torch.isfinite(n).all(0)
    n = torch.where(finite[None], n, torch.zeros_like(n))
    norm = n.norm(dim=0)
    valid = finite & (norm > 1e-6)
    n = torch.where(valid[None], n / norm.clamp_min(1e-6), torch.zeros_like(n))
    out, out_valid = _resize_masked(n, valid, size)
    norm = out.norm(dim=0)
    keep = out_valid & (norm > 1e-3)
    return torch.where(keep[None], out / norm.clamp_min(1e-3), torch.zeros_like(out))
