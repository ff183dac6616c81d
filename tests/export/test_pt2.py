"""``--format pt2``: a torch.export program beside the ONNX, validated like it, dynamic batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtlexport.errors import ConfigError
from mtlexport.export import BatchRange, ExportOptions, export_model, load_export_dir
from mtlexport.export.pt2 import program_outputs
from mtlexport.export.validate import random_images, torch_outputs
from mtlexport.train.checkpoint import load_checkpoint

from .conftest import TASK_ORDER


def test_pt2_program_is_validated_and_keeps_a_dynamic_batch(dense_ckpt: Path, tmp_path: Path) -> None:
    options = ExportOptions(batch=BatchRange(1, 2, 4), exporter="torchscript", simplify=False, real_data=False,
                            formats=("pt2",))
    assert options.formats == ("onnx", "pt2")
    report = export_model(dense_ckpt, tmp_path / "out", options)
    manifest = load_export_dir(tmp_path / "out")
    assert "model.pt2" in manifest.data["files"] and "model.onnx" in manifest.data["files"]
    assert manifest.data["programs"]["pt2"]["outputs"] == list(TASK_ORDER)
    pt2_checks = [c for c in report.checks if c.model == "model.pt2"]
    assert {c.check for c in pt2_checks} == {"torch.export:random@1", "torch.export:random@4"}
    assert all(c.passed for c in pt2_checks)
    x = random_images(3, 32, 32, seed=7)  # a batch size the program never saw
    got = program_outputs(tmp_path / "out" / "model.pt2", x)
    want = torch_outputs(load_checkpoint(dense_ckpt).build_model(), TASK_ORDER, x)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown export format .tflite.; valid: onnx, pt2"):
        ExportOptions(formats=("tflite",))
    with pytest.raises(ConfigError, match="unknown export format"):
        ExportOptions(formats="pt2")  # type: ignore[arg-type]  # a string, not a tuple
