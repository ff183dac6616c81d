"""``sweep``: every lambda trains, summary files, sparsity grows with lambda, finished runs reused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mtlexport.errors import ConfigError
from mtlexport.reporting import RecordingReporter
from mtlexport.train import TrainConfig
from mtlexport.train.sweep import SweepResult, run_dir_for, sweep

from .conftest import tiny_config_dict


def _config() -> TrainConfig:
    cfg = tiny_config_dict(train={"epochs": 1}, optimizer={"name": "adamw", "lr": 0.01},
                           data={"num_train": 16, "num_val": 8, "num_test": 8})
    cfg["model"]["tasks"] = cfg["model"]["tasks"][:2]  # segmentation + depth: fast
    return TrainConfig.from_dict(cfg)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepResult, Path]:
    out = tmp_path_factory.mktemp("sweep")
    return sweep(_config(), [1.0, 0.0], 1, out, plots=False), out


def test_summary_files_and_columns(swept: tuple[SweepResult, Path]) -> None:
    result, out = swept
    assert result.lambdas == (0.0, 1.0) and result.optimizer == "proxadam" and result.baseline_lam == 0.0
    assert result.headline == {"segmentation": "miou", "depth": "abs_err"}
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [float(r["lambda"]) for r in rows] == [0.0, 1.0]
    for col in ("trials", "split", "group_sparsity", "param_sparsity", "delta_overall", "delta_depth",
                "segmentation.miou", "segmentation.miou_std", "depth.abs_err", "depth.abs_err_std"):
        assert col in rows[0], col
    data = json.loads((out / "summary.json").read_text())
    assert data["lambdas"] == [0.0, 1.0] and len(data["rows"]) == 2
    assert Path(run_dir_for(out, 1.0, 0) / "best.pt").is_file()


def test_sparsity_grows_with_lambda_and_delta_vs_dense(swept: tuple[SweepResult, Path]) -> None:
    dense, sparse = swept[0].rows
    assert dense.group_sparsity["mean"] == 0.0 and dense.param_sparsity["mean"] == 0.0
    assert sparse.group_sparsity["mean"] > 0.0 and sparse.param_sparsity["mean"] > 0.0
    assert dense.delta["overall"] == 0.0 and set(sparse.delta) == {"segmentation", "depth", "overall"}


def test_rerun_reuses_finished_runs(swept: tuple[SweepResult, Path]) -> None:
    first, out = swept
    reporter = RecordingReporter()
    again = sweep(_config(), [0.0, 1.0], 1, out, reporter, plots=False)
    assert [r.reused for r in again.rows] == [1, 1]
    assert any("reusing" in m for m in reporter.messages)
    assert again.rows[1].group_sparsity == first.rows[1].group_sparsity


def test_bad_lambdas() -> None:
    with pytest.raises(ConfigError, match="lambdas"):
        sweep(_config(), [-1.0], 1, "unused")
    with pytest.raises(ConfigError, match="trials"):
        sweep(_config(), [0.0], 0, "unused")
