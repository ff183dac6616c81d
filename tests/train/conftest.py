"""A tiny training config shared by the training tests (seconds per epoch on 2 CPU cores)."""

from __future__ import annotations

from typing import Any

import pytest


def tiny_config_dict(**sections: dict[str, Any]) -> dict[str, Any]:
    """A 4-task resnet18 (base width 4) on 32x32 synthetic scenes; ``sections`` update it."""
    head = {"width": 8, "rates": [1, 2]}
    cfg: dict[str, Any] = {
        "model": {
            "backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
            "tasks": [
                {"name": "segmentation", "type": "segmentation", "head": head},
                {"name": "depth", "type": "depth", "head": head},
                {"name": "normals", "type": "normals", "head": head},
                {"name": "attributes", "type": "attributes", "head": {"width": 8, "hidden": 8}},
            ],
        },
        "data": {"name": "synthetic", "height": 32, "width": 32, "num_train": 16, "num_val": 8, "num_test": 8},
        "train": {"epochs": 2, "batch_size": 8, "seed": 0, "device": "cpu"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
    }
    for key, values in sections.items():
        cfg[key] = {**cfg.get(key, {}), **values}
    return cfg


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_config_dict()
