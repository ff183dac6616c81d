"""Validation compares real ONNX Runtime outputs with PyTorch and reports every failing output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from mtlexport.errors import ExportError
from mtlexport.export.validate import compare, ort_outputs, ort_session, raise_for_failures, torch_outputs
from mtlexport.tasks import Tolerance
from mtlexport.train.checkpoint import load_checkpoint

from .conftest import TASK_ORDER

TOL = {name: Tolerance(1e-3, 1e-3) for name in TASK_ORDER}


def test_compare_statistics() -> None:
    ref = [np.array([[1.0, -2.0]], dtype=np.float32)]
    got = [np.array([[1.0005, -2.1]], dtype=np.float32)]
    (check,) = compare("m.onnx", "random@1", ("attrs",), got, ref, {"attrs": Tolerance(1e-3, 1e-3)})
    assert not check.passed and check.mismatched == 1 and check.total == 2
    assert check.max_abs == pytest.approx(0.1, rel=1e-4)
    assert check.max_rel == pytest.approx(0.05, rel=1e-3)
    (shape,) = compare("m.onnx", "x", ("attrs",), [np.zeros((1, 3), np.float32)], ref, {"attrs": Tolerance(1, 1)})
    assert not shape.passed
    (nan,) = compare("m.onnx", "x", ("attrs",), [np.full((1, 2), np.nan, np.float32)], ref, {"attrs": Tolerance(1, 1)})
    assert not nan.passed


def _perturb_outputs(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """Add 0.01 before each named graph output (a wrong model, run for real by ONNX Runtime)."""
    model = onnx.load(str(src))
    for name in names:
        inner = f"{name}__before_perturb"
        for node in model.graph.node:
            node.output[:] = [inner if o == name else o for o in node.output]
        const = numpy_helper.from_array(np.array(0.01, dtype=np.float32), f"{name}__perturb")
        model.graph.initializer.append(const)
        model.graph.node.append(helper.make_node("Add", [inner, const.name], [name]))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))


def test_wrong_onnx_fails_with_every_bad_output(dense_export, dense_ckpt, tmp_path: Path) -> None:  # noqa: ANN001
    report, _ = dense_export
    wrong = tmp_path / "wrong.onnx"
    _perturb_outputs(report.out_dir / "model.onnx", wrong, ("seg", "attrs"))
    model = load_checkpoint(dense_ckpt).build_model()
    session = ort_session(wrong)
    checks = []
    for batch in (1, 4):
        x = torch.randn(batch, 3, 32, 32)
        checks += compare(wrong.name, f"random@{batch}", TASK_ORDER, ort_outputs(session, x.numpy()),
                          torch_outputs(model, TASK_ORDER, x), TOL)
    with pytest.raises(ExportError) as info:
        raise_for_failures(checks)
    message = str(info.value)
    assert "2 output(s) ['wrong.onnx:attrs', 'wrong.onnx:seg']" in message
    assert message.count("random@1") == 2 and message.count("random@4") == 2
    assert "wrong.onnx:depth on" not in message
    assert all(c.passed for c in checks if c.output == "depth")
