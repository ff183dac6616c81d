"""inspect and slim report a group-sparse run's own groups: zero groups -> channels removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlexport.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "sample_models" / "quick_sparse.pt"


def test_inspect_and_slim_report_zero_coupled_groups_and_removed_channels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(SAMPLE), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)["trained_sparsity"]
    assert trained["grouping"] == "coupled" and trained["zero_groups"] == trained["removable_channels"] > 0
    assert trained["removable_macs_share"] == pytest.approx(1 - trained["macs_ratio"])
    slim = tmp_path / "s.slim.pt"
    assert main(["slim", str(SAMPLE), "--out", str(slim), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained_groups"] == {"grouping": "coupled", "zero_groups": trained["zero_groups"],
                                        "groups": trained["lasso_groups"]}
    assert report["removed"] == trained["zero_groups"]  # every zero coupled group is a removed channel
    assert main(["inspect", str(slim)]) == 0
    out = capsys.readouterr().out
    n = trained["zero_groups"]
    assert "zero coupled groups -> channels" in out and f"{n} -> {n}" in out
