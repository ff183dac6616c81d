"""Per-layer latency tables: keys, on-disk cache reuse, per backend / thread count, ORT reorders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from mtlexport.errors import BackendUnavailableError, ConfigError
from mtlexport.surgery.latency import CACHE_ENV, LatencyTable, LayerShape, cache_dir

FAST = dict(layer_ms=0.5, rounds=2)
CONV = LayerShape.of(nn.Conv2d(8, 16, 3, padding=1), (1, 8, 8, 8))


def _shapes() -> list[LayerShape]:
    return [CONV.with_widths(cin, cout) for cin in (4, 8) for cout in (8, 16)] + [
        LayerShape.of(nn.Linear(8, 4), (1, 8)),
        LayerShape.of(nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 8, 8)).with_widths(4, 4),
    ]


def test_layer_shapes_key_geometry_and_widths() -> None:
    dw = LayerShape.of(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), (2, 8, 16, 16))
    assert dw.depthwise and dw.key() == "conv 2x8x16x16>8 k3x3 s2x2 p1x1 d1x1 dw"
    assert dw.with_widths(5, 5).input_shape == (2, 5, 16, 16)
    with pytest.raises(ConfigError, match="depthwise"):
        dw.with_widths(5, 8)
    lin = LayerShape.of(nn.Linear(32, 4), (2, 4, 4, 32))  # channels-last MLP input
    assert lin.with_widths(20, 3).key() == "linear 2x4x4x20>3 b"
    with pytest.raises(ConfigError, match="grouped"):
        LayerShape.of(nn.Conv2d(8, 8, 3, groups=2), (1, 8, 8, 8))


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_dir() == tmp_path / "latency"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == Path.home() / ".cache" / "mtlexport" / "latency"


def test_torch_table_is_measured_once_and_reused(tmp_path: Path) -> None:
    table = LatencyTable("torch", 1, directory=tmp_path, **FAST)
    assert table.ensure(_shapes()) == len(_shapes()) == table.measured
    assert all(table.latency(s) > 0 for s in _shapes()) and table.measured == len(_shapes())
    payload = json.loads(table.path.read_text())
    assert payload["backend"] == "torch" and payload["threads"] == 1 and len(payload["entries"]) == len(_shapes())
    again = LatencyTable("torch", 1, directory=tmp_path, **FAST)
    assert again.ensure(_shapes()) == 0 and again.measured == 0
    assert again.latency(CONV) == table.latency(CONV)
    # inductor prices layers with the eager kernels it calls: the same table
    assert LatencyTable("inductor", 1, directory=tmp_path, **FAST).path == table.path
    other = LatencyTable("torch", 2, directory=tmp_path, **FAST)
    assert other.path != table.path and other.ensure([CONV]) == 1


def test_stale_or_damaged_tables_are_measured_afresh(tmp_path: Path) -> None:
    table = LatencyTable("torch", 1, directory=tmp_path, **FAST)
    table.ensure([CONV])
    payload = json.loads(table.path.read_text())
    table.path.write_text(json.dumps({**payload, "software": "torch 0.0"}))
    assert LatencyTable("torch", 1, directory=tmp_path, **FAST).ensure([CONV]) == 1
    table.path.write_text("{not json")
    assert LatencyTable("torch", 1, directory=tmp_path, **FAST).ensure([CONV]) == 1


def test_an_unwritable_cache_costs_only_time(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    table = LatencyTable("torch", 1, directory=blocker / "sub", **FAST)
    assert table.latency(CONV) > 0 and "not saved" in table.save_error


def test_ort_table_subtracts_reorders_a_model_does_not_pay(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    table = LatencyTable("ort", 1, directory=tmp_path, **FAST)
    assert table.software.startswith("onnxruntime ") and "nchwc" in table.software
    table.ensure(_shapes())
    assert all(table.latency(s) > 0 for s in _shapes())
    if " nchwc 0" not in table.software:  # x86: a one-node convolution pays blocked-layout reorders
        assert any(k.startswith("reorder ") for k in table.entries)


def test_ort_table_is_refused_when_onnxruntime_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import fails at the boundary
    with pytest.raises(BackendUnavailableError, match="onnxruntime .*not installed"):
        LatencyTable("ort", 1, directory=tmp_path)
    with pytest.raises(ConfigError, match="ort, torch, inductor"):
        LatencyTable("trt", 1, directory=tmp_path)
