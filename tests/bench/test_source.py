"""Export folders as bench sources: the plan trtexec built is found, and it is checked with
the tolerances of the precision it was exported at (from the manifest), not bench's --precision."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mtlexport.bench import RUNNERS, BenchSettings, check_outputs, load_source
from mtlexport.bench.source import load_references
from mtlexport.errors import BackendUnavailableError, VerificationError


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory: pytest.TempPathFactory, dense_ckpt: Path) -> Path:
    """An fp16 export folder in which trtexec_build.sh has written model.plan."""
    from mtlexport.export import BatchRange, ExportOptions, export_model

    out = tmp_path_factory.mktemp("bench") / "fp16_export"
    export_model(dense_ckpt, out, ExportOptions(batch=BatchRange(1, 2, 4), height=32, width=32, precision="fp16",
                                                exporter="torchscript", simplify=False, engine=False, real_data=False))
    (out / "model.plan").write_bytes(b"\x00not a real plan")
    return out


def _perturbed(source, batch: int, delta: float) -> dict[str, np.ndarray]:  # noqa: ANN001
    refs = load_references(source, source.opt_batch)
    return {name: ref[np.arange(batch) % source.opt_batch] + delta for name, ref in refs.items()}


def test_trtexec_plan_in_an_export_folder_is_benched(fp16_export: Path) -> None:
    source = load_source(fp16_export)
    assert source.plan == fp16_export / "model.plan" and source.plan_precision == "fp16"
    plan = load_source(fp16_export / "model.plan")
    assert plan.kind == "plan" and plan.plan_precision == "fp16" and plan.refs
    runner = RUNNERS.get("trt")(source, BenchSettings(device="cuda"))
    assert runner.precision == "fp16"  # whatever --precision says
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="tensorrt"):
            runner.activate()  # the folder is accepted; only TensorRT is missing here


def test_plan_outputs_are_checked_with_the_exports_tolerances(fp16_export: Path) -> None:
    source = load_source(fp16_export)  # bench's --precision is fp32
    fp16_atol = source.tolerances_for("fp16")["seg"][0]
    assert source.tolerances["seg"][0] < fp16_atol
    settings = BenchSettings()
    off = _perturbed(source, 2, 0.5 * fp16_atol)  # within fp16 tolerance, far beyond fp32
    check = check_outputs(off, source, 2, settings, precision=source.plan_precision)
    assert check["reference"] == "passed" and check["precision"] == "fp16"
    with pytest.raises(VerificationError, match="exceeds atol"):
        check_outputs(off, source, 2, settings)  # the fp32 ONNX at the same error fails


def test_tf32_plan_gets_tf32_tolerances(export_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fp32"
    shutil.copytree(export_dir, folder)
    (folder / "model.plan").write_bytes(b"\x00plan")
    source = load_source(folder)
    assert source.plan_precision == "tf32"
    assert source.tolerances_for("tf32")["seg"] == source.tolerances_for("fp16")["seg"]
    assert RUNNERS.get("trt")(source, BenchSettings(device="cuda")).precision == "tf32"
