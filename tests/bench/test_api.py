"""bench_models / compare: batch sweeps, skipped backends, side-by-side figures, checks, reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mtlexport.bench import (
    BenchResult, BenchSettings, ModelSource, bench_models, check_outputs, compare, compare_results, load_source,
    parse_batches, parse_size, plot_report, report_csv,
)
from mtlexport.bench.stats import summarize
from mtlexport.errors import BackendUnavailableError, ConfigError, VerificationError
from mtlexport.reporting import RecordingReporter


def _trt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_batch_sweep_on_two_backends(export_dir: Path, fast: BenchSettings) -> None:
    report = bench_models([export_dir], backends=["ort", "torch"], batches="1,2", settings=fast)
    assert [(r.backend, r.batch) for r in report.results] == [("ort", 1), ("ort", 2), ("torch", 1), ("torch", 2)]
    for r in report.results:
        assert r.queries >= fast.iterations and r.queries == r.latency.count
        assert r.input_shape == (r.batch, 3, 32, 32)
        assert r.images_per_s == pytest.approx(r.throughput_qps * r.batch)
        assert r.throughput_qps == pytest.approx(r.queries / r.wall_s)
        assert r.gflops_per_s == pytest.approx(2 * r.macs_per_sample * r.batch * r.throughput_qps / 1e9)
        assert r.check["finite"] and r.check["reference"] == "passed"
        assert r.h2d.max == 0.0 and r.d2h.max == 0.0  # CPU: zero-length transfer spans
        assert r.latency.mean == pytest.approx(r.compute.mean)
    meta = report.metadata
    assert meta["device"] == "cpu" and meta["cpu"] and "torch" in meta["versions"]
    assert meta["settings"]["iterations"] == fast.iterations and meta["batches"] == [1, 2]
    json.dumps(report.to_dict(include_records=True))


def test_unavailable_backend_is_skipped_while_others_run(dense_ckpt: Path, fast: BenchSettings) -> None:
    if _trt_importable():
        pytest.skip("tensorrt is installed here")
    reporter = RecordingReporter()
    report = bench_models([dense_ckpt], backends=["torch", "trt"], settings=fast, reporter=reporter)
    assert [r.backend for r in report.results] == ["torch"]
    (skip,) = report.skipped
    assert skip["backend"] == "trt" and "tensorrt" in skip["reason"] and "\n" not in skip["reason"]
    assert any(m.startswith("skipped dense on trt") for m in reporter.messages)


def test_only_unavailable_backend_raises(dense_ckpt: Path, fast: BenchSettings) -> None:
    if _trt_importable():
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        bench_models([dense_ckpt], backends=["trt"], settings=replace(fast, device="cuda"))


def test_high_variation_is_reported(dense_ckpt: Path, fast: BenchSettings) -> None:
    reporter = RecordingReporter()
    bench_models([dense_ckpt], settings=replace(fast, cv_warn=1e-12), reporter=reporter)
    assert any("coefficient of variation" in m for m in reporter.messages)


def test_compare_side_by_side(dense_ckpt: Path, small_ckpt: Path, fast: BenchSettings) -> None:
    report = compare(dense_ckpt, small_ckpt, batches=[1, 2], settings=fast, rounds=2)
    assert [(r.label, r.batch) for r in report.results] == [("dense", 1), ("small", 1), ("dense", 2), ("small", 2)]
    assert len(report.comparisons) == 2 and report.metadata["compare_rounds"] == 2
    for c, (base, cand) in zip(report.comparisons, [report.results[:2], report.results[2:]]):
        assert (c.baseline, c.candidate, c.backend) == ("dense", "small", "torch")
        assert c.macs_ratio == pytest.approx(base.macs_per_sample / cand.macs_per_sample)
        assert c.macs_ratio > 1.5
        assert c.speedup == pytest.approx(base.latency.median / cand.latency.median)
        assert c.slower == (c.speedup < 1)  # on a loaded machine even the smaller model can lose
        assert c.realised == (None if c.slower else pytest.approx(c.speedup / c.macs_ratio))
        assert c.speedup_min == pytest.approx(base.latency.min / cand.latency.min)
        assert c.realised_min == (None if c.speedup_min < 1 else pytest.approx(c.speedup_min / c.macs_ratio))
        assert c.input_shape == (3, 32, 32)
        assert base.queries >= fast.iterations and cand.queries >= fast.iterations
    assert report.metadata["compare"] == {"baseline": "dense", "candidate": "small", "backend": "torch",
                                          "input_shape": [3, 32, 32]}


def test_compare_a_model_with_itself_gets_distinct_labels(dense_ckpt: Path, fast: BenchSettings) -> None:
    report = compare(dense_ckpt, dense_ckpt, settings=fast, rounds=1)
    assert [r.label for r in report.results] == ["dense", "dense-2"]
    assert report.comparisons[0].macs_ratio == 1.0


def _result(label: str, median_ms: float, macs: int | None, shape: tuple[int, ...] = (1, 3, 32, 32)) -> BenchResult:
    lat = summarize([median_ms] * 5)
    return BenchResult(label=label, engine=label, kind="checkpoint", backend="torch", device="cpu", batch=shape[0],
                       precision="fp32", input_shape=shape, settings={}, queries=5, warmup_queries=1, wall_s=1.0,
                       throughput_qps=1000 / median_ms, images_per_s=1000 / median_ms, macs_per_sample=macs,
                       gflops_per_s=None, latency=lat, compute=lat, h2d=lat, d2h=lat, enqueue=lat, host=lat,
                       check={})


@pytest.mark.parametrize(("base", "cand", "realised", "slower", "note"), [
    ((10.0, 200), (5.0, 100), 1.0, False, ""),                             # fewer MACs, faster: a share
    ((10.0, 200), (8.0, 100), 0.625, False, ""),
    ((10.0, 200), (12.5, 100), None, True, "slower (1.25x the baseline's median latency), despite 2.00x fewer MACs"),
    ((10.0, 100), (7.6, 131), None, False, "does not have fewer MACs (MACs ratio 0.76)"),
    ((10.0, 100), (13.16, 131), None, True, "slower (1.32x the baseline's median latency), it does not have fewer"),
    ((10.0, None), (5.0, 100), None, False, "MACs unknown"),
])
def test_realised_share_only_for_a_faster_candidate_with_fewer_macs(
        base: tuple[float, int | None], cand: tuple[float, int | None], realised: float | None, slower: bool,
        note: str) -> None:
    c = compare_results(_result("dense", *base), _result("slim", *cand))
    assert c.realised == (None if realised is None else pytest.approx(realised))
    assert c.slower is slower and note in c.note and (c.note == "") == (realised is not None)
    assert c.realised_min == c.realised or c.realised_min == pytest.approx(c.realised)
    assert c.to_dict()["input_shape"] == [3, 32, 32] and c.to_dict()["slower"] is slower


def test_results_of_different_inputs_are_not_compared() -> None:
    with pytest.raises(ConfigError, match="inputs differ"):
        compare_results(_result("dense", 10.0, 200), _result("slim", 5.0, 100, (1, 3, 64, 64)))


def test_compare_refuses_models_of_different_input_sizes(dense_ckpt: Path, tmp_path: Path,
                                                         fast: BenchSettings) -> None:
    from tests.bench.conftest import SIZE
    from mtlexport.train.checkpoint import load_checkpoint, save_checkpoint

    big = save_checkpoint(tmp_path / "big.pt", replace(load_checkpoint(dense_ckpt),
                                                       config={"data": {"height": 2 * SIZE, "width": 2 * SIZE}}))
    with pytest.raises(ConfigError, match=r"dense \(baseline\) takes 3x32x32 inputs but big takes 3x64x64; "
                                          r"pass --input-size HxW"):
        compare(dense_ckpt, big, settings=fast, rounds=1)
    report = compare(dense_ckpt, big, settings=replace(fast, input_size=(48, 48)), rounds=1)  # a stated common size
    assert [r.input_shape for r in report.results] == [(1, 3, 48, 48)] * 2
    assert report.comparisons[0].input_shape == (3, 48, 48) and report.comparisons[0].macs_ratio == 1.0


def test_check_outputs_collects_every_failure(tmp_path: Path) -> None:
    ref = np.arange(8, dtype=np.float32).reshape(2, 4)
    (tmp_path / "a.bin").write_bytes(ref.tobytes())
    (tmp_path / "b.bin").write_bytes(ref.tobytes())
    (tmp_path / "in.bin").write_bytes(np.zeros((2, 1, 2, 2), np.float32).tobytes())
    source = ModelSource(path=tmp_path, kind="export", label="m", input_shape=(1, 2, 2), batch_range=(1, 2, 4),
                         output_names=("a", "b"), inputs_bin=tmp_path / "in.bin",
                         refs={"a": tmp_path / "a.bin", "b": tmp_path / "b.bin"}, tolerances={"a": (1e-3, 0.0)})
    settings = BenchSettings()
    good = check_outputs({"a": ref + 1e-4, "b": ref.copy()}, source, 2, settings)
    assert good["reference"] == "passed" and good["max_abs_error"]["a"] == pytest.approx(1e-4, rel=1e-2)
    # batch 3 repeats the reference rows cyclically: rows 0, 1, 0
    assert check_outputs({"a": ref[[0, 1, 0]], "b": ref[[0, 1, 0]]}, source, 3, settings)["reference"] == "passed"
    bad_b = ref.copy()
    bad_b[0, 0] = np.nan
    with pytest.raises(VerificationError) as info:
        check_outputs({"a": ref + 1.0, "b": bad_b}, source, 2, settings)
    message = str(info.value)
    assert "b has non-finite values" in message and "a max |error| 1" in message and "\n" not in message
    lenient = check_outputs({"a": ref + 1.0, "b": bad_b}, source, 2, replace(settings, verify=False))
    assert lenient["finite"] is False and len(lenient["failures"]) == 3


def test_csv_and_plot(dense_ckpt: Path, fast: BenchSettings, tmp_path: Path) -> None:
    report = bench_models([dense_ckpt], batches=[1, 2], settings=fast)
    lines = report_csv(report).strip().splitlines()
    assert lines[0].startswith("label,backend,device,batch") and len(lines) == 3
    png = plot_report(tmp_path / "sweep.png", report)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("text", "expected"), [("1,8,16", (1, 8, 16)), ("4", (4,)), (" 2, 2,1", (2, 1)), (8, (8,)),
                                                  ("1:4:8", (1, 4, 8))])
def test_parse_batches(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["0", "abc", "", "1,-2", "1.5", "99999"])
def test_parse_batches_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="batch"):
        parse_batches(text)


def test_parse_size() -> None:
    assert parse_size("64x48") == (64, 48) and parse_size("32") == (32, 32)
    with pytest.raises(ConfigError):
        parse_size("ax3")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"iterations": 0}, "iterations"), ({"duration_s": -1}, "duration"), ({"warmup_ms": -1}, "warmup"),
    ({"device": "tpu"}, "device"), ({"threads": 0}, "threads"), ({"cuda_graph": True}, "CUDA graphs"),
    ({"precision": "int8"}, "precision"), ({"ort_provider": "cuda"}, "needs --device cuda"),
])
def test_settings_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BenchSettings(**kwargs)


def test_load_source_errors(tmp_path: Path, export_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_source(tmp_path / "missing.pt")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="suffix"):
        load_source(tmp_path / "weights.bin")
    from mtlexport.errors import MtlexportError

    with pytest.raises(MtlexportError, match="not an export folder"):
        load_source(tmp_path)
    with pytest.raises(ConfigError, match="input-size"):
        load_source(export_dir, input_size=(64, 64))


def test_load_source_kinds(dense_ckpt: Path, export_dir: Path) -> None:
    ckpt = load_source(dense_ckpt)
    assert (ckpt.kind, ckpt.default_backend, ckpt.input_shape, ckpt.output_names) == (
        "checkpoint", "torch", (3, 32, 32), ("seg", "depth"))
    exp = load_source(export_dir)
    assert (exp.kind, exp.default_backend, exp.batch_range, exp.macs) == ("export", "ort", (1, 2, 4), ckpt.macs)
    assert exp.inputs_bin is not None and set(exp.refs) == {"seg", "depth"} and exp.tolerances["seg"][0] > 0
    onnx = load_source(export_dir / "model.onnx")
    assert onnx.kind == "onnx" and onnx.refs == exp.refs and onnx.label == exp.label


def test_latency_plot_has_one_legend_for_both_panels(dense_ckpt: Path, small_ckpt: Path, fast: BenchSettings) -> None:
    from matplotlib import pyplot as plt

    from mtlexport.bench.plot import latency_figure

    fig = latency_figure(compare(dense_ckpt, small_ckpt, batches=[1, 2], settings=fast, rounds=1))
    try:
        (legend,) = fig.legends  # a figure legend under both panels, none inside a panel
        assert [t.get_text() for t in legend.get_texts()] == ["dense (torch, cpu, baseline)",
                                                              "small (torch, cpu, candidate)"]
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.axes) == 2
    finally:
        plt.close(fig)
