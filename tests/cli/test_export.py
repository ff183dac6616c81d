"""``mtlexport export``: wiring, JSON output, one-line refusals that leave --out untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtlexport.cli.main import main
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
    rc = main(["export", str(ckpt), "--out", str(out), "--force", *args])  # even with --force: untouched
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


# ----------------------------------------------------------------------------- reliability
def _one_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 300, err
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def test_an_existing_export_is_refused_unless_forced(ckpt: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    out.mkdir()  # an empty folder is fine
    assert main(["export", str(ckpt), "--out", str(out), "--batch", "2", "--json", *FAST]) == 0
    before = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(out), "--batch", "2", *FAST]) == 1
    _one_line(capsys.readouterr().err, f"--out {out} already holds files", "--force")
    assert (out / "manifest.json").read_text() == before
    assert main(["export", str(ckpt), "--out", str(out), "--batch", "1:1:2", "--force", "--json", *FAST]) == 0
    assert json.loads((out / "manifest.json").read_text())["input"]["batch"] == {"min": 1, "opt": 1, "max": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_input_size_and_comma_batch(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sized"
    assert main(["export", str(ckpt), "--out", str(out), "--input-size", "16x24", "--batch", "1,2,2", "--json",
                 *FAST]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == ["batch", 3, 16, 24] and manifest["input"]["batch"]["opt"] == 2
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x"), "--input-size", "30"]) == 2
    _one_line(capsys.readouterr().err, "input height 30 is not divisible", "--input-size")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x"), "--input-size", "16", "--height", "16"]) == 2
    _one_line(capsys.readouterr().err, "give the size once")
    assert not (tmp_path / "x").exists()


def _non_finite(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in state.items()}
    state[name].view(-1)[0] = float("nan")
    state[name].view(-1)[1] = float("inf")
    return state


def test_non_finite_weights_are_named_before_export(ckpt: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from mtlexport.train.checkpoint import load_checkpoint

    good = load_checkpoint(ckpt)
    name = next(k for k in good.state_dict if k.startswith("heads.seg") and k.endswith("weight"))
    bad = save_checkpoint(tmp_path / "nan.pt", replace(good, state_dict=_non_finite(good.state_dict, name)))
    assert main(["export", str(bad), "--out", str(tmp_path / "o"), *FAST]) == 1
    _one_line(capsys.readouterr().err, f"tensor {name} holds 1 NaN and 1 Inf value(s)", "earlier checkpoint")
    assert not (tmp_path / "o").exists()
    assert main(["slim", str(bad), "--out", str(tmp_path / "nan.slim.pt")]) == 1  # slim refuses it the same way
    _one_line(capsys.readouterr().err, f"tensor {name} holds 1 NaN")
    assert not (tmp_path / "nan.slim.pt").exists()


def test_non_finite_plain_state_dict_with_model_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.models.user_model import build

    weights = tmp_path / "weights.pt"
    torch.save(_non_finite(build().state_dict(), "trunk.3.weight"), weights)
    assert main(["export", str(weights), "--model", "tests.models.user_model:build", "--out", str(tmp_path / "o"),
                 "--input-size", "16", *FAST]) == 1
    _one_line(capsys.readouterr().err, "tensor trunk.3.weight holds 1 NaN and 1 Inf")
    assert not (tmp_path / "o").exists()


def test_progress_names_every_step_as_it_starts(ckpt: Path, tmp_path: Path) -> None:
    from mtlexport.export import BatchRange, ExportOptions, export_model
    from mtlexport.reporting import NullReporter

    class Steps(NullReporter):
        def __init__(self) -> None:
            self.events: list[tuple[int, str]] = []

        def advance(self, key: str, steps: int = 1, **fields: object) -> None:
            self.events.append((steps, str(fields.get("step"))))

    reporter = Steps()
    export_model(ckpt, tmp_path / "p", ExportOptions(batch=BatchRange(1, 1, 2), exporter="torchscript",
                                                     simplify=False, real_data=False), reporter)
    assert reporter.events[0] == (0, "ONNX (torchscript)")  # named before the slow first step starts
    assert [s for s, _ in reporter.events[1:]] == [1] * 6 and all(n != "None" for _, n in reporter.events)
    assert [n for _, n in reporter.events][1:] == ["precision", "validating on ONNX Runtime", "reference outputs",
                                                   "TensorRT engine", "scripts and manifest", "done"]


def test_sigterm_mid_export_leaves_no_staging_folder(ckpt: Path, tmp_path: Path) -> None:
    """A real process, killed with SIGTERM while the (slow, dynamo) ONNX export runs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    code = "import sys; from mtlexport.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "export", str(ckpt), "--out", str(out), "--no-real-data"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.*.staging")):
            assert proc.poll() is None, proc.communicate()[1][-500:]
            assert time.monotonic() < deadline, "the staging folder never appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # inside the export now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-500:]
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM): ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())
