"""FP16 conversion with FP32 I/O, on a small graph exported with the fast TorchScript exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import nn

from mtlexport.export.onnx_export import export_onnx
from mtlexport.export.precision import convert_to_fp16, float_tensor_census
from mtlexport.export.validate import ort_outputs, ort_session


class Small(nn.Module):
    """Conv, BN, ReLU, a scale-factor Resize (its ``scales`` must stay float32) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        y = torch.relu(self.bn(self.conv(images)))
        up = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        return {"up": up, "logits": self.fc(y.mean(dim=(2, 3)))}


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    model = Small().eval()
    path = tmp_path_factory.mktemp("fp16") / "small.onnx"
    export_onnx(model, path, ("up", "logits"), torch.randn(2, 3, 16, 16), 18, "torchscript")
    return path, model


def test_fp16_keeps_float32_io_and_halves_weights(small_onnx: tuple[Path, nn.Module]) -> None:
    path, _ = small_onnx
    half = convert_to_fp16(onnx.load(str(path)))
    onnx.checker.check_model(half, full_check=True)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [TensorProto.FLOAT] * 2
    census = float_tensor_census(half)
    assert census.get("float16", 0) >= 4
    resize = [n for n in half.graph.node if n.op_type == "Resize"]
    assert resize, "the test graph must contain a Resize"
    # Resize scales stay float32 (ONNX schema): no float16 initializer or Cast feeds them.
    inits = {i.name: i for i in half.graph.initializer}
    for node in resize:
        if len(node.input) > 2 and node.input[2] in inits:
            assert inits[node.input[2]].data_type == TensorProto.FLOAT


def test_fp16_runs_on_ort_cpu_close_to_torch(small_onnx: tuple[Path, nn.Module], tmp_path: Path) -> None:
    path, model = small_onnx
    out = tmp_path / "small.fp16.onnx"
    onnx.save(convert_to_fp16(onnx.load(str(path))), str(out))
    x = torch.randn(3, 3, 16, 16)
    got = ort_outputs(ort_session(out), x.numpy())
    with torch.no_grad():
        ref = model(x)
    for name, value in zip(("up", "logits"), got):
        assert value.dtype == np.float32
        assert np.abs(value - ref[name].numpy()).max() < 2e-2
    fp32 = ort_outputs(ort_session(path), x.numpy())
    assert any(np.abs(a - b).max() > 0 for a, b in zip(got, fp32)), "fp16 model should not be bit-identical to fp32"
