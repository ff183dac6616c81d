"""End-to-end exports of tiny checkpoints: ONNX contract, folder, manifest, slim models, failures."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mtlexport.errors import ConfigError, ExportError
from mtlexport.export import BatchRange, ExportOptions, choose_trt_major, export_model, export_network, load_export_dir
from mtlexport.export.trt import probe_tensorrt
from mtlexport.export.validate import ort_outputs, ort_session, torch_outputs
from mtlexport.models import create_model
from mtlexport.train.checkpoint import load_checkpoint

from .conftest import TASK_ORDER, tiny_spec

FAST = {"exporter": "torchscript", "simplify": False, "real_data": False}


def test_onnx_io_names_order_and_symbolic_batch(dense_export) -> None:  # noqa: ANN001
    report, _ = dense_export
    for name in ("model.onnx", "model.fp16.onnx"):
        model = onnx.load(str(report.out_dir / name))
        assert [i.name for i in model.graph.input] == ["images"]
        assert [o.name for o in model.graph.output] == list(TASK_ORDER)
        for value in (*model.graph.input, *model.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert "dynamo=True" in report.manifest["versions"]["exporter"]


def test_dynamic_batch_runs_at_1_max_and_beyond(dense_export, dense_ckpt) -> None:  # noqa: ANN001
    report, _ = dense_export
    model = load_checkpoint(dense_ckpt).build_model()
    session = ort_session(report.out_dir / "model.onnx")
    for batch in (1, 4, 5):
        x = torch.randn(batch, 3, 32, 32)
        got = ort_outputs(session, x.numpy())
        ref = torch_outputs(model, TASK_ORDER, x)
        assert [g.shape[0] for g in got] == [batch] * 3
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


def test_validation_results_recorded_for_both_models(dense_export) -> None:  # noqa: ANN001
    report, _ = dense_export
    checks = report.manifest["validation"]["checks"]
    assert report.manifest["validation"]["passed"]
    keys = {(c["model"], c["check"], c["output"]) for c in checks}
    for model in ("model.onnx", "model.fp16.onnx"):
        for check in ("ort:random@1", "ort:random@4"):
            for output in TASK_ORDER:
                assert (model, check, output) in keys
    fp16 = [c for c in checks if c["model"] == "model.fp16.onnx"]
    assert all(c["atol"] == 5e-2 for c in fp16) and max(c["max_abs"] for c in fp16) > 0
    assert report.manifest["precision"]["recipe"]["name"] == "fp16-io-fp32"


def test_folder_contents_and_hashes(dense_export) -> None:  # noqa: ANN001
    report, _ = dense_export
    folder = report.out_dir
    manifest = load_export_dir(folder)
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted([*manifest.data["files"], *manifest.data["engine_files"], "manifest.json"]) == on_disk
    for expected in ("model.onnx", "model.fp16.onnx", "trtexec_build.sh", "trtexec_bench.sh", "inputs/images.bin",
                     "refs/seg.bin", "refs/depth.bin", "refs/attrs.bin"):
        assert expected in manifest.data["files"]
    assert manifest.output_names == TASK_ORDER and manifest.batch == {"min": 1, "opt": 2, "max": 4}
    assert manifest.input_shape == (3, 32, 32)
    # The stored input is the OPT batch; the reference outputs come from PyTorch for it.
    x = np.fromfile(folder / "inputs/images.bin", dtype="<f4").reshape(2, 3, 32, 32)
    seg = np.fromfile(folder / "refs/seg.bin", dtype="<f4").reshape(2, 5, 32, 32)
    got = ort_outputs(ort_session(folder / "model.onnx"), x)
    np.testing.assert_allclose(got[0], seg, atol=1e-4, rtol=1e-4)
    spec = manifest.data["source"]["spec"]
    assert spec["backbone"] == "resnet18" and spec["params"] > 0 and spec["macs_per_sample"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", manifest.data["source"]["sha256"])


def test_tampered_file_is_detected(dense_export, tmp_path: Path) -> None:  # noqa: ANN001
    import shutil

    report, _ = dense_export
    copy = tmp_path / "copy"
    shutil.copytree(report.out_dir, copy)
    with open(copy / "refs/attrs.bin", "r+b") as fh:
        fh.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ExportError, match="refs/attrs.bin does not match its SHA-256"):
        load_export_dir(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ExportError, match="model.onnx is missing"):
        load_export_dir(copy)


def test_scripts_are_executable_and_reference_only_folder_files(dense_export) -> None:  # noqa: ANN001
    report, _ = dense_export
    folder = report.out_dir
    produced = {"model.plan", "timing.cache", "times.json", "profile.json", "layers.json"}
    for script in ("trtexec_build.sh", "trtexec_bench.sh"):
        path = folder / script
        assert os.access(path, os.X_OK)
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
        for ref in re.findall(r"--\w+=(?:images:)?([\w./-]+\.(?:onnx|plan|cache|bin|json))", text):
            assert not ref.startswith("/") and ".." not in ref
            assert ref in produced or (folder / ref).is_file(), ref
    build = (folder / "trtexec_build.sh").read_text()
    major = report.manifest["tensorrt"]["target_major"]
    assert major == choose_trt_major(None, probe_tensorrt().major)[0]
    if major == 11:  # the default where none is installed: the trt extra's version, no --fp16
        assert "--fp16" not in build and "--onnx=model.fp16.onnx" in build
    else:
        assert "--fp16" in build and "--onnx=model.onnx" in build


def test_trt_skip_is_one_notice(dense_export) -> None:  # noqa: ANN001
    report, reporter = dense_export
    if report.engine_built:
        pytest.skip("TensorRT built an engine here")
    trt_notices = [m for m in reporter.messages if m.startswith("TensorRT engine not built")]
    assert len(trt_notices) == 1 and "\n" not in trt_notices[0]
    assert report.manifest["tensorrt"]["not_built_reason"]
    assert report.manifest["tensorrt"]["target_major"] == choose_trt_major(None, probe_tensorrt().major)[0]
    assert not (report.out_dir / "model.plan").exists()


@pytest.fixture(scope="module")
def slim_export(slim_ckpt, tmp_path_factory):  # noqa: ANN001, ANN201
    """The slim checkpoint exported in fp16 for TensorRT 11 (fast exporter)."""
    options = ExportOptions(batch=BatchRange(1, 2, 4), precision="fp16", trt_version=11, **FAST)
    return export_model(slim_ckpt, tmp_path_factory.mktemp("slim") / "slim", options)


def test_slim_checkpoint_exports_smaller_and_validated(slim_export, dense_export) -> None:  # noqa: ANN001
    dense, _ = dense_export
    report = slim_export
    assert report.manifest["validation"]["passed"]
    assert {c.model for c in report.checks} == {"model.onnx", "model.fp16.onnx"}
    assert report.manifest["source"]["spec"]["widths_count"] > 0
    assert report.manifest["source"]["spec"]["params"] < dense.manifest["source"]["spec"]["params"]
    assert report.onnx_bytes["model.onnx"] < 0.8 * dense.onnx_bytes["model.onnx"]
    assert report.onnx_bytes["model.fp16.onnx"] < 0.8 * dense.onnx_bytes["model.fp16.onnx"]


def test_trt11_scripts_use_fp16_onnx(slim_export) -> None:  # noqa: ANN001
    report = slim_export
    build = (report.out_dir / "trtexec_build.sh").read_text()
    flags = [line.strip().rstrip(" \\") for line in build.splitlines() if line.startswith("    --")]
    assert "--onnx=model.fp16.onnx" in flags and not {"--fp16", "--int8", "--best"} & set(flags)
    assert report.manifest["tensorrt"]["target_from"] == "requested"
    assert report.manifest["tensorrt"]["builder"]["fp16_flag"] is False
    assert report.manifest["trtexec"]["runtime_defaults"] == {"cuda_graph": True, "spin_wait": True,
                                                              "data_transfers": False}


class ExportTimeDrift(torch.nn.Module):
    """Computes something else while being exported: the ONNX differs from the reference."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(images)
        if torch.onnx.is_in_onnx_export():
            out = {k: v + 0.5 if k != "attrs" else v for k, v in out.items()}
        return out


def test_failed_validation_reports_all_outputs_and_keeps_old_folder(tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("old export")
    model = ExportTimeDrift(create_model(spec).eval())
    with pytest.raises(ExportError) as info:
        export_network(model, spec, out, ExportOptions(batch=BatchRange(1, 1, 2), height=32, width=32, **FAST))
    message = str(info.value)
    assert "2 output(s)" in message and "model.onnx:seg" in message and "model.onnx:depth" in message
    assert "attrs" not in message.split(":", 1)[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["existing"], "no staging folder may be left behind"


@pytest.mark.parametrize("kwargs, words", [
    ({"height": 36}, "not divisible"),
    ({"width": 20}, "not divisible"),
])
def test_bad_size_refused_before_touching_folder(dense_ckpt, tmp_path: Path, kwargs: dict, words: str) -> None:  # noqa: ANN001
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ConfigError, match=words):
        export_model(dense_ckpt, out, ExportOptions(**kwargs))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_report_to_dict_is_json(dense_export) -> None:  # noqa: ANN001
    report, _ = dense_export
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["onnx_bytes"]["model.fp16.onnx"] < payload["onnx_bytes"]["model.onnx"]
    assert len(payload["checks"]) == len(report.checks)


def test_real_data_checks_and_reference_input(dense_export) -> None:  # noqa: ANN001
    report, reporter = dense_export
    validation = report.manifest["validation"]
    assert validation["real_data"], reporter.messages
    assert {"real@1", "real@4", "random@1", "random@4"} <= set(validation["inputs"])
    assert any(c.check == "ort:real@4" and c.model == "model.fp16.onnx" for c in report.checks)
    assert report.manifest["reference"]["input"]["source"] == "real"


def test_manifest_says_what_was_validated_where(dense_export) -> None:  # noqa: ANN001
    """ORT CPU runs the FP16 model's convolutions in float32 (it inserts Casts): say so."""
    report, _ = dense_export
    runs = {r["model"]: r for r in report.manifest["validation"]["runs"]}
    assert runs["model.onnx"]["provider"] == "CPUExecutionProvider" and runs["model.onnx"]["computed_in"] == "float32"
    fp16 = runs["model.fp16.onnx"]
    assert fp16["casts_inserted"] > 0 and fp16["computed_in"] != "float16"
    assert fp16["runtime"].startswith("onnxruntime ")
    validated = report.manifest["precision"]["recipe"]["validated"]
    assert "not float16 arithmetic" in validated and f"inserted {fp16['casts_inserted']} Casts" in validated


def test_export_network_names_a_non_finite_tensor_before_exporting(tmp_path: Path) -> None:
    import torch

    from mtlexport.errors import CheckpointError
    from mtlexport.export import ExportOptions, export_network
    from mtlexport.models import ModelSpec, create_model

    spec = ModelSpec.from_dict({"backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
                                "tasks": [{"name": "depth", "type": "depth", "head": {"width": 4, "rates": [1]}}]})
    model = create_model(spec)
    with torch.no_grad():
        model.backbone.stem[0].weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"the model: tensor backbone.stem.0.weight holds 0 NaN and 1 Inf"):
        export_network(model, spec, tmp_path / "out", ExportOptions(height=32, width=32, engine=False))
    assert not (tmp_path / "out").exists()
