"""The runner contract, run for every registered runner that can run here; the others must
refuse with a one-line BackendUnavailableError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtlexport.bench import RUNNERS, BenchSettings, Harness, load_source
from mtlexport.bench.runners.base import Runner
from mtlexport.bench.source import make_inputs
from mtlexport.errors import BackendUnavailableError, ConfigError, MtlexportError


def _source_for(name: str, dense_ckpt: Path, export_dir: Path):
    return load_source(dense_ckpt if name == "torch" else export_dir)


def _active_runner(name: str, source, settings: BenchSettings, tmp_path: Path) -> Runner:
    runner = RUNNERS.get(name)(source, settings, tmp_path)
    try:
        runner.activate()
    except BackendUnavailableError as exc:
        message = str(exc)
        assert message and "\n" not in message and name in message
        pytest.skip(f"{name} cannot run here: {message}")
    return runner


def test_registry_names_and_unknown() -> None:
    assert set(RUNNERS.names()) >= {"torch", "inductor", "ort", "trt"}
    with pytest.raises(ConfigError, match="valid names: inductor, ort, torch, trt"):
        RUNNERS.get("tvm")


@pytest.mark.parametrize("name", RUNNERS.names())
def test_runner_contract(name: str, dense_ckpt: Path, export_dir: Path, tmp_path: Path) -> None:
    settings = BenchSettings(threads=1)
    source = _source_for(name, dense_ckpt, export_dir)
    runner = RUNNERS.get(name)(source, settings, tmp_path)
    with pytest.raises(MtlexportError, match="not active"):
        runner.prepare(make_inputs(source, 1))
    runner = _active_runner(name, source, settings, tmp_path)
    try:
        with pytest.raises(MtlexportError, match="already active"):
            runner.activate()
        assert isinstance(runner.transfers, bool)
        if settings.device == "cpu":
            assert runner.transfers is False
        info = runner.describe()
        assert "transfers" in info
        json.dumps(info)
        reference = None
        for batch in (2, 1, 3):  # re-preparing at another batch size must work
            images = make_inputs(source, batch)
            outputs = runner.infer(images)
            assert runner.batch == batch
            assert tuple(outputs) == source.output_names
            for out in outputs.values():
                assert out.dtype == np.float32 and out.shape[0] == batch and np.isfinite(out).all()
            if reference is None:
                reference = outputs
            else:  # rows repeat cyclically, so row 0 is the same input at every batch size
                for key, out in outputs.items():
                    np.testing.assert_allclose(out[0], reference[key][0], rtol=1e-4, atol=1e-5)
        harness = Harness(runner)
        harness.measure(iterations=2, duration_s=0.0)
        assert len(harness.records) == 2
        again = runner.outputs()
        for key, out in again.items():
            assert out.shape[0] == 3
    finally:
        runner.deactivate()
    assert not runner.is_active
    runner.deactivate()  # idempotent


@pytest.mark.parametrize("name", RUNNERS.names())
def test_runners_agree_with_export_references(name: str, dense_ckpt: Path, export_dir: Path, tmp_path: Path) -> None:
    source = load_source(export_dir)
    run_source = load_source(dense_ckpt) if name == "torch" else source
    runner = _active_runner(name, run_source, BenchSettings(threads=1), tmp_path)
    try:
        outputs = runner.infer(make_inputs(source, source.opt_batch))
    finally:
        runner.deactivate()
    from mtlexport.bench.source import load_references

    for key, ref in load_references(source, source.opt_batch).items():
        np.testing.assert_allclose(outputs[key].reshape(ref.shape), ref, rtol=1e-3, atol=1e-4)


def test_rejects_bad_input_layout(dense_ckpt: Path, tmp_path: Path) -> None:
    runner = _active_runner("torch", load_source(dense_ckpt), BenchSettings(), tmp_path)
    try:
        with pytest.raises(ConfigError, match="float32 NCHW"):
            runner.prepare(np.zeros((1, 3, 32, 32), dtype=np.float64))
    finally:
        runner.deactivate()


def test_torch_runner_needs_a_checkpoint(export_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"  # an ONNX file without a manifest (so without its checkpoint)
    bare.write_bytes((export_dir / "model.onnx").read_bytes())
    source = load_source(bare)
    assert source.kind == "onnx" and source.checkpoint is None and source.input_shape == (3, 32, 32)
    runner = RUNNERS.get("torch")(source, BenchSettings(), tmp_path)
    with pytest.raises(ConfigError, match="needs a .pt checkpoint"):
        runner.activate()


def test_ort_cuda_provider_missing_is_one_line(export_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("the CUDA provider is installed here")
    runner = RUNNERS.get("ort")(load_source(export_dir), BenchSettings(device="cuda"), tmp_path)
    with pytest.raises(BackendUnavailableError) as info:
        runner.activate()
    assert "\n" not in str(info.value) and "onnxruntime-gpu" in str(info.value)


def test_trt_missing_is_one_line(export_dir: Path, tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    runner = RUNNERS.get("trt")(load_source(export_dir), BenchSettings(device="cuda"), tmp_path)
    with pytest.raises(BackendUnavailableError) as info:
        runner.activate()
    assert "\n" not in str(info.value) and "tensorrt" in str(info.value)


def test_torch_cuda_without_gpu_is_one_line(dense_ckpt: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    runner = RUNNERS.get("torch")(load_source(dense_ckpt), BenchSettings(device="cuda"), tmp_path)
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        runner.activate()


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"precision": "fp16", "channels_last": True}, {"cuda_graph": True},
                                     {"transfers": False}])
def test_torch_cuda_options(options: dict, dense_ckpt: Path, tmp_path: Path) -> None:
    settings = BenchSettings(device="cuda", **options)
    runner = _active_runner("torch", load_source(dense_ckpt), settings, tmp_path)
    try:
        outputs = runner.infer(make_inputs(runner.source, 2))
        assert all(np.isfinite(v).all() for v in outputs.values())
        harness = Harness(runner)
        harness.measure(iterations=3, duration_s=0.0)
        assert all(r.compute_ms > 0 for r in harness.records)
        assert all((r.h2d_ms > 0) == runner.transfers for r in harness.records)
    finally:
        runner.deactivate()


def test_ort_gpu_provider_chains_fall_back_to_cuda_then_cpu() -> None:
    from mtlexport.bench.runners.onnxrt import providers_for

    opts = {"device_id": 0, "user_compute_stream": "123"}
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("cuda", opts) == [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]
    chain = providers_for("tensorrt", opts)
    assert [p[0] if isinstance(p, tuple) else p for p in chain] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert chain[0][1] == chain[1][1] == opts and chain[0][1] is not chain[1][1]
