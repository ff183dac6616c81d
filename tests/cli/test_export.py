"""``mtlexport export``: wiring, JSON output, one-line refusals that leave --out untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli.main import main
from mtlexport.models import ModelSpec, create_model
from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

SPEC = {
    "backbone": {"name": "resnet18", "base_width": 8, "output_stride": 8},
    "tasks": [
        {"name": "seg", "type": "segmentation", "num_outputs": 3, "head": {"width": 8, "rates": [1]}},
        {"name": "attrs", "type": "attributes", "attributes": ["a"], "head": {"width": 8, "hidden": 8}},
    ],
}
FAST = ["--exporter", "torchscript", "--no-simplify", "--no-real-data"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = ModelSpec.from_dict(SPEC)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli_export") / "tiny.pt"
    save_checkpoint(path, Checkpoint(spec=spec, state_dict=create_model(spec).state_dict(),
                                     config={"data": {"name": "synthetic", "height": 32, "width": 32}}))
    return path


def test_export_json(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    rc = main(["export", str(ckpt), "--out", str(out), "--batch", "1:2:3", "--json", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    from mtlexport.export import choose_trt_major
    from mtlexport.export.trt import probe_tensorrt

    assert payload["out_dir"] == str(out) and payload["trt_version"] == choose_trt_major(None, probe_tensorrt().major)[0]
    assert set(payload["onnx_bytes"]) == {"model.onnx"}
    assert all(c["passed"] for c in payload["checks"])
    assert (out / "manifest.json").is_file() and (out / "trtexec_build.sh").is_file()
    if not payload["engine_built"]:
        assert "TensorRT engine not built" in captured.err


def test_no_tf32_reaches_the_builder_the_script_and_the_manifest(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "no_tf32"
    assert main(["export", str(ckpt), "--out", str(out), "--batch", "2", "--no-tf32", "--json", *FAST]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["tf32"] is False and manifest["tensorrt"]["builder"]["tf32"] is False
    assert manifest["tensorrt"]["engine_precision"] == "fp32"
    assert "--noTF32" in (out / "trtexec_build.sh").read_text()


def test_export_table_output(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", str(ckpt), "--out", str(tmp_path / "e"), "--batch", "2", "--trt-version", "11", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Validation" in captured.out and "TensorRT 11 scripts written" in captured.out


@pytest.mark.parametrize("args, words", [
    (["--batch", "8:4:1"], "larger than MAX"),
    (["--batch", "1:9:4"], "must lie between"),
    (["--height", "30"], "not divisible"),
    (["--height", "0"], "positive"),
    (["--precision", "int8"], "unknown precision"),
    (["--opset", "16"], "between 17 and 21"),
    (["--trt-version", "9"], "trt-version"),
])
def test_bad_arguments_are_one_line_and_touch_nothing(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      args: list[str], words: str) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    rc = main(["export", str(ckpt), "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and words in err and "\n" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_format_pt2_adds_the_program(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pt2"
    assert main(["export", str(ckpt), "--out", str(out), "--batch", "1:2:2", "--format", "onnx,pt2", "--json",
                 *FAST]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["formats"] == ["onnx", "pt2"] and (out / "model.pt2").is_file()
    assert any(c["model"] == "model.pt2" and c["passed"] for c in manifest["validation"]["checks"])
