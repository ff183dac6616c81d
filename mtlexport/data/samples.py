"""Real inputs for verification: the first images of a checkpoint's own dataset
(validation split first), used by export validation and by the slimming surgeon.

Returns ``(images, None)`` or ``(None, reason)``: a missing dataset is a notice, not an error,
because random inputs are always checked as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.errors import MtlexportError

SPLITS = ("val", "test", "train")


def real_images(data_config: dict[str, Any] | None, count: int, height: int, width: int) -> tuple[Tensor | None, str | None]:
    """Up to ``count`` images (N, 3, H, W) from the dataset ``data_config`` describes, resized to H x W."""
    if not data_config:
        return None, "the checkpoint has no data config"
    if data_config.get("name") == "factory":  # never import code a checkpoint names
        return None, "the checkpoint's data comes from a data factory, which mtlexport imports only when you name it"
    try:
        from mtlexport.data import build_dataset
        from mtlexport.data.config import DataConfig
    except ImportError:
        return None, "mtlexport.data provides no build_dataset in this installation"
    try:
        config = DataConfig.from_dict(dict(data_config))
        dataset = None
        for split in SPLITS:
            num_key = f"num_{split}"
            # Synthetic scenes are drawn in fixed chunks: asking for fewer gives the same first scenes.
            cfg = config
            if hasattr(config, num_key) and getattr(config, num_key) > count:
                cfg = dataclasses.replace(config, **{num_key: count})
            if hasattr(config, num_key) and getattr(config, num_key) == 0:
                continue
            dataset = build_dataset(cfg, split)
            if len(dataset) > 0:
                break
        if dataset is None or len(dataset) == 0:
            return None, "the checkpoint's dataset has no samples"
        n = min(count, len(dataset))
        images = torch.stack([dataset[i]["image"].float() for i in range(n)])
    except MtlexportError as exc:
        return None, str(exc)
    if n < count:  # repeat to fill the batch (small fixture datasets)
        images = images.repeat((count + n - 1) // n, 1, 1, 1)[:count]
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return images.contiguous(), None
