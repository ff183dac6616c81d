"""Tiny checkpoints (32x32 inputs) and one shared export, so the folder runs in about a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mtlexport.export import BatchRange, ExportOptions, export_model
from mtlexport.models import ModelSpec, create_model
from mtlexport.reporting import RecordingReporter
from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

TASK_ORDER = ("seg", "depth", "attrs")
DATA = {"name": "synthetic", "height": 32, "width": 32, "num_train": 8, "num_val": 8, "num_test": 8}


def tiny_spec(widths: dict[str, tuple[int, ...]] | None = None) -> ModelSpec:
    """ResNet-18 at base width 8 with a dense, a one-channel dense and an image-level task."""
    head = {"width": 16, "rates": [1, 2]}
    return ModelSpec.from_dict({
        "backbone": {"name": "resnet18", "base_width": 8, "output_stride": 8},
        "tasks": [
            {"name": "seg", "type": "segmentation", "num_outputs": 5, "head": head},
            {"name": "depth", "type": "depth", "head": head},
            {"name": "attrs", "type": "attributes", "attributes": ["a", "b"], "head": {"width": 16, "hidden": 16}},
        ],
        "widths": {k: list(v) for k, v in (widths or {}).items()},
    })


def slim_widths() -> dict[str, tuple[int, ...]]:
    """Halve the inner width of every residual block (conv1 out, bn1, conv2 in)."""
    widths: dict[str, tuple[int, ...]] = {}
    for stage, planes in (("layer1", 8), ("layer2", 16), ("layer3", 32), ("layer4", 64)):
        for block in (0, 1):
            prefix = f"backbone.{stage}.{block}"
            cin = planes if block == 1 or stage == "layer1" else planes // 2
            widths[f"{prefix}.conv1"] = (cin, planes // 2, 1)
            widths[f"{prefix}.bn1"] = (planes // 2,)
            widths[f"{prefix}.conv2"] = (planes // 2, planes, 1)
    return widths


def write_checkpoint(path: Path, spec: ModelSpec, seed: int = 0, data: dict[str, Any] | None = None) -> Path:
    """Save a randomly initialised model (non-trivial batch-norm statistics) as a checkpoint."""
    torch.manual_seed(seed)
    model = create_model(spec)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, Checkpoint(spec=spec, state_dict=model.state_dict(), config={"data": dict(data or DATA)}))
    return path


@pytest.fixture(scope="session")
def dense_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "dense.pt", tiny_spec())


@pytest.fixture(scope="session")
def slim_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "slim.pt", tiny_spec(slim_widths()), seed=1)


@pytest.fixture(scope="session")
def dense_export(tmp_path_factory: pytest.TempPathFactory, dense_ckpt: Path) -> tuple[Any, RecordingReporter]:
    """One real export (dynamo exporter, fp16 so both ONNX files exist) shared by many tests."""
    reporter = RecordingReporter()
    out = tmp_path_factory.mktemp("exports") / "dense"
    options = ExportOptions(batch=BatchRange(1, 2, 4), precision="fp16")
    return export_model(dense_ckpt, out, options, reporter), reporter
