"""``compare_methods`` (``mtlexport sweep --methods``) end to end on the tiny config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mtlexport.errors import ConfigError
from mtlexport.train import TrainConfig
from mtlexport.train.compare import compare_methods, dense_config, method_config
from tests.train.conftest import tiny_config_dict

FAST = {"duration_s": 0.05, "rounds": 1}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("methods")
    cfg = TrainConfig.from_dict(tiny_config_dict(train={"epochs": 2}))
    return cfg, out, compare_methods(cfg, ["group_lasso", "disparse"], out, target_macs=0.5, **FAST)


def test_rows_and_files(compared) -> None:
    _, out, result = compared
    assert [(r.method, r.structure) for r in result.rows] == [
        ("dense", "dense"), ("group_lasso", "channel"), ("disparse", "channel")]
    dense, *methods = result.rows
    assert dense.macs_ratio == 1.0 and dense.delta_t == pytest.approx(0.0)
    for row in methods:
        assert row.macs_ratio <= 0.55 and row.params_ratio < 1.0 and row.sparsity > 0
        assert row.deployed.endswith("best.slim.pt") and (Path(row.run_dir) / "onnx" / "model.onnx").is_file()
        assert row.speedup == pytest.approx(row.dense_latency_ms / row.latency_ms)
        assert set(row.delta_per_task) == {"segmentation", "depth", "normals", "attributes"}
    summary = json.loads((out / "summary.json").read_text())
    for key in ("method", "structure", "macs_ratio", "params_ratio", "sparsity", "delta_t", "delta_per_task",
                "latency_ms", "speedup", "metrics"):
        assert all(key in row for row in summary["rows"])
    with (out / "summary.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert [r["method"] for r in lines] == ["dense", "group_lasso", "disparse"] and "delta_depth" in lines[0]
    assert (out / "summary.md").read_text().count("\n") == 5
    for name in ("delta_vs_macs.png", "delta_vs_latency.png", "disparse_mask_iou.png"):
        assert (out / name).stat().st_size > 0


def test_an_interrupted_comparison_continues(compared) -> None:
    cfg, out, _ = compared
    stamp = (out / "disparse_channel" / "trial_0" / "last.pt").stat().st_mtime
    (out / "summary.json").unlink()
    again = compare_methods(cfg, ["group_lasso", "disparse"], out, target_macs=0.5, **FAST)
    assert all(r.reused for r in again.rows)
    assert (out / "disparse_channel" / "trial_0" / "last.pt").stat().st_mtime == stamp
    assert (out / "summary.json").is_file()


def test_element_rows_claim_no_speed_up(compared) -> None:
    cfg, out, _ = compared
    result = compare_methods(cfg, ["disparse"], out, target_macs=0.5, structure="element", plots=False, **FAST)
    row = result.rows[1]
    assert (row.method, row.structure, row.macs_ratio, row.params_ratio) == ("disparse", "element", 1.0, 1.0)
    assert row.sparsity == pytest.approx(50.0, abs=0.01) and row.deployed.endswith("best.pt")
    assert result.rows[0].reused  # the dense run is shared with the channel comparison


def test_method_configs_share_data_seeds_and_optimizer() -> None:
    cfg = TrainConfig.from_dict(tiny_config_dict(optimizer={"name": "proxadam", "lr": 0.003, "lambda": 1e-3}))
    dense = dense_config(cfg, 3)
    assert dense.optimizer.lam == 0.0 and dense.sparsifier.name == "none" and dense.train.seed == 3
    ds = method_config(cfg, "disparse", "element", 3, target_macs=0.5, target_sparsity=0.5)
    assert ds.optimizer.name == "adamw" and ds.optimizer.lr == 0.003 and ds.sparsifier.target_sparsity == 0.5
    gl = method_config(cfg, "group_lasso", "element", 3, target_macs=0.5, target_sparsity=0.5)
    assert gl.sparsifier.structure == "channel" and gl.sparsifier.target_macs == 0.5
    assert ds.data == gl.data == dense.data and ds.model == dense.model


def test_bad_arguments(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(tiny_config_dict())
    with pytest.raises(ConfigError, match="valid names: adapmtl, disparse, group_lasso"):
        compare_methods(cfg, ["snip"], tmp_path, target_macs=0.5)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        compare_methods(cfg, ["disparse"], tmp_path, target_macs=1.5)
    with pytest.raises(ConfigError, match="channel or element"):
        compare_methods(cfg, ["disparse"], tmp_path, target_macs=0.5, structure="filter")
