"""Export folders after export: a plan built by trtexec_build.sh is found and accepted, export
artifacts stay hash-checked, tolerances and the plan's precision come from the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtlexport.errors import ExportError
from mtlexport.export import load_export_dir
from mtlexport.export.manifest import ENGINE_FILES, file_table


@pytest.fixture()
def folder(dense_export, tmp_path: Path) -> Path:  # noqa: ANN001
    """A private copy of the shared fp16 export (no engine: no TensorRT here)."""
    report, _ = dense_export
    copy = tmp_path / "export"
    shutil.copytree(report.out_dir, copy)
    return copy


def _run_trtexec_build(folder: Path) -> None:
    """What trtexec_build.sh and trtexec_bench.sh leave behind (the files, not real engines)."""
    (folder / "model.plan").write_bytes(b"\x00plan built by trtexec")
    (folder / "timing.cache").write_bytes(b"cache")
    for name in ("times.json", "profile.json", "layers.json"):
        (folder / name).write_text("[]")


def test_plan_built_by_trtexec_is_found_and_accepted(folder: Path) -> None:
    manifest = load_export_dir(folder)
    assert manifest.plan is None and manifest.plan_origin is None
    _run_trtexec_build(folder)
    manifest = load_export_dir(folder)  # no SHA-256 complaint about files written after export
    assert manifest.plan == folder / "model.plan" and manifest.plan_origin == "trtexec"


def test_rebuilt_plan_of_a_python_build_is_accepted(folder: Path) -> None:
    """A folder whose engine the export built, then rebuilt on the target with trtexec."""
    (folder / "model.plan").write_bytes(b"plan from the Python build")
    (folder / "timing.cache").write_bytes(b"old cache")
    data = json.loads((folder / "manifest.json").read_text())
    data["tensorrt"]["build"] = {"plan": "model.plan", "layers": "engine.layers.json", "log": "engine_build.log",
                                 "seconds": 1.0, "timing_cache": "timing.cache", "plan_bytes": 26}
    data["engine_files"] = file_table(folder, engine=True)
    (folder / "manifest.json").write_text(json.dumps(data))
    assert load_export_dir(folder).plan_origin == "export"
    _run_trtexec_build(folder)
    manifest = load_export_dir(folder)
    assert manifest.plan == folder / "model.plan" and manifest.plan_origin == "trtexec"


def test_schema_1_folder_listing_the_plan_in_files_still_loads_after_a_rebuild(folder: Path) -> None:
    (folder / "model.plan").write_bytes(b"original")
    data = json.loads((folder / "manifest.json").read_text())
    data["schema_version"] = 1
    data["files"].update(file_table(folder, engine=True))  # schema 1 hashed the plan with everything else
    data.pop("engine_files")
    (folder / "manifest.json").write_text(json.dumps(data))
    _run_trtexec_build(folder)
    assert load_export_dir(folder).plan_origin == "trtexec"


def test_export_artifacts_stay_verified(folder: Path) -> None:
    _run_trtexec_build(folder)
    with open(folder / "model.fp16.onnx", "r+b") as fh:
        fh.write(b"\x08\x09")
    with pytest.raises(ExportError, match="model.fp16.onnx does not match its SHA-256"):
        load_export_dir(folder)


def test_engine_files_are_kept_apart(folder: Path) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    assert not ENGINE_FILES & set(data["files"]) and data["schema_version"] == 2
    assert "trtexec_build.sh" in data["files"] and "model.onnx" in data["files"]


def test_plan_precision_and_tolerances_come_from_the_manifest(folder: Path) -> None:
    manifest = load_export_dir(folder)
    assert manifest.precision == "fp16" and manifest.engine_precision == "fp16"
    fp16, fp32, tf32 = (manifest.tolerances(p) for p in ("fp16", "fp32", "tf32"))
    assert set(fp16) == set(manifest.output_names) and fp16["seg"][0] > fp32["seg"][0]
    assert tf32 == fp16  # TF32 keeps FP16's mantissa
    data = json.loads((folder / "manifest.json").read_text())
    for out in data["outputs"]:  # schema 1 had no tf32 entry and no engine_precision
        out["tolerance"].pop("tf32")
    data["tensorrt"].pop("engine_precision")
    data["precision"]["requested"] = "fp32"
    (folder / "manifest.json").write_text(json.dumps(data))
    old = load_export_dir(folder)
    assert old.engine_precision == "tf32" and old.tolerances("tf32") == fp16


def _drop(data: dict, key: str) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data[part]
    del data[last]


@pytest.mark.parametrize("key", ["outputs", "input", "input.name", "input.shape", "input.batch", "input.batch.opt",
                                 "precision", "precision.models", "precision.requested", "files"])
def test_a_missing_key_is_one_line_naming_the_key_and_the_fix(folder: Path, key: str) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    _drop(data, key)
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ExportError) as info:
        load_export_dir(folder)
    message = str(info.value)
    assert f"lacks '{key}'" in message and "re-export the folder ('mtlexport export CKPT --out DIR --force')" in message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(("key", "value"), [("outputs", []), ("outputs", [{"task": "seg"}]), ("input.shape", [1, 3]),
                                            ("input.batch", {"min": 1, "opt": "4", "max": 8}),
                                            ("files", {"model.onnx": {"bytes": 1}})])
def test_a_malformed_key_is_named(folder: Path, key: str, value: object) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    *parents, last = key.split(".")
    target = data
    for part in parents:
        target = target[part]
    target[last] = value
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ExportError, match=f"has a malformed '{key}"):
        load_export_dir(folder)


def test_bench_of_a_manifest_without_outputs_is_one_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlexport.cli.main import main

    data = json.loads((folder / "manifest.json").read_text())
    del data["outputs"]
    (folder / "manifest.json").write_text(json.dumps(data))
    assert main(["bench", str(folder), "--duration-s", "0"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "lacks 'outputs'" in line and "re-export" in line
