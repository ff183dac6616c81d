"""Tiny models, checkpoints and one export folder shared by the bench tests (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlexport.bench import BenchSettings

SIZE = 32


def tiny_spec(base_width: int = 8, head_width: int = 8) -> dict:
    """A two-task ResNet-18 small enough to run in milliseconds."""
    head = {"width": head_width, "rates": [1, 2]}
    return {"backbone": {"name": "resnet18", "base_width": base_width, "output_stride": 8},
            "tasks": [{"name": "seg", "type": "segmentation", "num_outputs": 3, "head": head},
                      {"name": "depth", "type": "depth", "head": head}]}


def write_checkpoint(path: Path, base_width: int = 8, head_width: int = 8) -> Path:
    from mtlexport.models import ModelSpec, create_model
    from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

    spec = ModelSpec.from_dict(tiny_spec(base_width, head_width))
    model = create_model(spec)
    return save_checkpoint(path, Checkpoint(spec=spec, state_dict=model.state_dict(),
                                            config={"data": {"height": SIZE, "width": SIZE}}))


@pytest.fixture(scope="session")
def dense_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("bench") / "dense.pt")


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrower model (fewer MACs) standing in for a slimmed one."""
    return write_checkpoint(tmp_path_factory.mktemp("bench") / "small.pt", base_width=4, head_width=4)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, dense_ckpt: Path) -> Path:
    """The dense checkpoint exported by ``mtlexport.export`` (ONNX, inputs, refs, manifest)."""
    from mtlexport.export import BatchRange, ExportOptions, export_model

    out = tmp_path_factory.mktemp("bench") / "dense_export"
    options = ExportOptions(batch=BatchRange(1, 2, 4), height=SIZE, width=SIZE, exporter="torchscript",
                            simplify=False, engine=False, real_data=False)
    export_model(dense_ckpt, out, options)
    return out


@pytest.fixture()
def fast() -> BenchSettings:
    """Measurement settings that keep every run well under a second."""
    return BenchSettings(warmup_ms=5, duration_s=0.02, iterations=3, threads=1)
