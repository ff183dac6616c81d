"""TensorRT: builder choices per version, the clean skip here, the real build where possible."""

from __future__ import annotations

import pytest

from mtlexport.export.trt import builder_plan, probe_tensorrt


def test_builder_plan_trt10_fp16_sets_the_flag() -> None:
    plan = builder_plan(10, "fp16", 2048, 4)
    assert plan.network_flags == 0 and plan.fp16_flag and plan.onnx_file == "model.onnx"
    assert plan.workspace_mib == 2048 and plan.optimization_level == 4 and plan.profiling_verbosity == "DETAILED"


def test_builder_plan_trt11_bakes_precision_into_the_onnx() -> None:
    plan = builder_plan(11, "fp16", 4096, 3)
    assert plan.network_flags == 0 and not plan.fp16_flag and plan.onnx_file == "model.fp16.onnx"
    assert builder_plan(11, "fp32", 4096, 3).onnx_file == "model.onnx"


def test_probe_says_why_not() -> None:
    probe = probe_tensorrt()
    if probe.available:
        pytest.skip("tensorrt and a GPU are present")
    assert probe.reason and ("not installed" in probe.reason or "no CUDA GPU" in probe.reason
                             or "cannot be imported" in probe.reason)


@pytest.mark.tensorrt
def test_real_engine_build_and_run(tmp_path, dense_ckpt) -> None:  # noqa: ANN001
    from mtlexport.export import BatchRange, ExportOptions, export_model, load_export_dir

    for precision in ("fp32", "fp16"):
        out = tmp_path / precision
        report = export_model(dense_ckpt, out, ExportOptions(batch=BatchRange(1, 2, 4), precision=precision))
        assert report.engine_built
        manifest = load_export_dir(out)
        assert manifest.plan is not None and manifest.plan.read_bytes()[:4] != b"MTLX"
        assert (out / "timing.cache").is_file() and (out / "engine.layers.json").is_file()
        assert any(c.check.startswith("trt:") and c.passed for c in report.checks)
        assert manifest.data["versions"]["tensorrt"]


class _Recorder:
    """Stands in for the tensorrt module: records builder calls (no engine is built)."""

    def __init__(self, major: int, accept_shapes: bool = True) -> None:
        import types

        self.calls: list[tuple] = []
        rec = self
        results = {"parse_from_file": True, "build_serialized_network": b"PLAN", "serialize": b"CACHE",
                   "get_engine_information": "{}", "set_input_shape": accept_shapes}

        class ILogger:
            def __init__(self) -> None:
                pass

        class Obj:
            def __init__(self, name: str) -> None:
                self._name = name

            def __getattr__(self, attr: str):  # noqa: ANN204
                def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                    rec.calls.append((f"{self._name}.{attr}", args))
                    return results.get(attr, Obj(attr))
                return call

            def __setattr__(self, attr: str, value: object) -> None:
                if attr.startswith("_"):
                    object.__setattr__(self, attr, value)
                else:
                    rec.calls.append((f"{self._name}.{attr}=", (value,)))

        enum = types.SimpleNamespace
        self.module = types.SimpleNamespace(
            __version__=f"{major}.0.0", ILogger=ILogger,
            Builder=lambda logger: Obj("builder"), OnnxParser=lambda net, logger: Obj("parser"),
            Runtime=lambda logger: Obj("runtime"),
            MemoryPoolType=enum(WORKSPACE="WORKSPACE"), ProfilingVerbosity=enum(DETAILED="DETAILED"),
            LayerInformationFormat=enum(JSON="JSON"),
            BuilderFlag=enum(FP16="FP16", TF32="TF32") if major < 11 else enum(TF32="TF32"),
        )


@pytest.mark.parametrize("major", [10, 11])
def test_build_engine_call_sequence(monkeypatch: pytest.MonkeyPatch, tmp_path, major: int) -> None:  # noqa: ANN001
    import sys

    from mtlexport.export.options import BatchRange
    from mtlexport.export.trt import build_engine

    fake = _Recorder(major)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = builder_plan(major, "fp16", 1024, 2)
    build = build_engine(tmp_path, plan, BatchRange(1, 2, 4), (3, 32, 32), b"OLD")
    names = [c[0] for c in fake.calls]
    args = dict(fake.calls[i] for i in range(len(fake.calls)))
    assert ("builder.create_network", (0,)) in fake.calls
    assert ("parser.parse_from_file", (str(tmp_path / plan.onnx_file),)) in fake.calls
    assert args["create_builder_config.set_memory_pool_limit"] == ("WORKSPACE", 1024 << 20)
    assert args["create_builder_config.builder_optimization_level="] == (2,)
    assert args["create_builder_config.profiling_verbosity="] == ("DETAILED",)
    assert args["create_optimization_profile.set_shape"] == ("images", (1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))
    assert args["create_builder_config.create_timing_cache"] == (b"OLD",)
    assert ("create_builder_config.set_flag" in names) == (major == 10)
    assert (tmp_path / "model.plan").read_bytes() == b"PLAN"  # raw plan, no header
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE"
    assert (tmp_path / build.layers).read_text() == "{}" and (tmp_path / build.log).is_file()


@pytest.mark.parametrize("major", [10, 11])
def test_tf32_is_left_on_by_default_and_cleared_when_off(monkeypatch: pytest.MonkeyPatch, tmp_path, major: int) -> None:  # noqa: ANN001
    import sys

    from mtlexport.export.options import BatchRange
    from mtlexport.export.trt import build_engine

    for tf32 in (True, False):
        fake = _Recorder(major)
        monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
        plan = builder_plan(major, "fp32", 1024, 2, tf32=tf32)
        assert plan.tf32 is tf32 and plan.engine_precision == ("tf32" if tf32 else "fp32")
        build_engine(tmp_path, plan, BatchRange(1, 2, 4), (3, 32, 32), None)
        cleared = [c for c in fake.calls if c[0] == "create_builder_config.clear_flag"]
        assert cleared == ([] if tf32 else [("create_builder_config.clear_flag", ("TF32",))])
    assert builder_plan(11, "fp16", 1024, 2).engine_precision == "fp16"
    assert builder_plan(10, "fp16", 1024, 2, tf32=False).engine_precision == "fp16"


def test_inspector_reads_an_execution_context_with_the_opt_shape(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    import sys

    from mtlexport.export.options import BatchRange
    from mtlexport.export.trt import build_engine

    fake = _Recorder(11)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    build_engine(tmp_path, builder_plan(11, "fp32", 1024, 2), BatchRange(1, 2, 4), (3, 32, 32), None)
    names = [c[0] for c in fake.calls]
    shape = names.index("create_execution_context.set_input_shape")
    assert fake.calls[shape][1] == ("images", (2, 3, 32, 32))
    attach = names.index("create_engine_inspector.execution_context=")
    assert getattr(fake.calls[attach][1][0], "_name") == "create_execution_context"
    assert shape < attach < names.index("create_engine_inspector.get_engine_information")


def test_rejected_input_shape_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    import sys

    from mtlexport.errors import ExportError
    from mtlexport.export.options import BatchRange
    from mtlexport.export.trt import build_engine, set_input_shape

    fake = _Recorder(10, accept_shapes=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(ExportError, match=r"rejected input shape \[2, 3, 32, 32\].*optimisation profile"):
        build_engine(tmp_path, builder_plan(10, "fp32", 1024, 2), BatchRange(1, 2, 4), (3, 32, 32), None)

    class Context:
        def set_input_shape(self, name: str, shape: tuple) -> bool:
            return shape[0] <= 4

    set_input_shape(Context(), (4, 3, 8, 8))
    with pytest.raises(ExportError, match=r"\[5, 3, 8, 8\]"):
        set_input_shape(Context(), (5, 3, 8, 8))


def _fake_tensorrt(root, body: str):  # noqa: ANN001, ANN202
    """A ``tensorrt`` package on disk whose import runs ``body`` (what the real bindings do)."""
    package = root / "tensorrt"
    package.mkdir()
    (package / "__init__.py").write_text(body)
    return root


@pytest.mark.parametrize(("body", "words"), [
    ("raise ImportError('libnvinfer.so.10: cannot open shared object file: No such file or directory')",
     ["libnvinfer.so.10 cannot be loaded", "LD_LIBRARY_PATH"]),
    ("import ctypes\nctypes.CDLL('libnvinfer_plugin.so.11')", ["libnvinfer_plugin.so.11", "tensorrt is installed"]),
    ("import tensorrt_libs_that_do_not_exist", ["tensorrt_libs_that_do_not_exist", "is missing"]),
])
def test_missing_native_library_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path, body: str, words: list) -> None:  # noqa: ANN001
    import sys

    from mtlexport.bench import BenchSettings, RUNNERS
    from mtlexport.bench.source import ModelSource
    from mtlexport.errors import BackendUnavailableError
    from mtlexport.export.trt import import_tensorrt

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(_fake_tensorrt(tmp_path, body)))
    with pytest.raises(BackendUnavailableError) as info:
        import_tensorrt()
    message = str(info.value)
    assert "\n" not in message and "not installed" not in message
    assert all(w in message for w in words), message
    probe = probe_tensorrt()
    assert not probe.available and probe.reason == message
    runner = RUNNERS.get("trt")(ModelSource(path=tmp_path / "m.plan", kind="plan", label="m"),
                                BenchSettings(device="cuda"))
    with pytest.raises(BackendUnavailableError, match="backend trt: tensorrt is installed"):
        runner.activate()


def test_tensorrt_not_installed_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mtlexport.errors import BackendUnavailableError
    from mtlexport.export.trt import import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what the import system does for a missing module
    with pytest.raises(BackendUnavailableError, match="the tensorrt package is not installed"):
        import_tensorrt()
