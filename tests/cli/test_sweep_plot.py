"""``mtlexport sweep`` and ``mtlexport plot`` end to end on a tiny config, with --json and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mtlexport.cli.main import main

TINY = {
    "model": {
        "backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
        "tasks": [
            {"name": "segmentation", "type": "segmentation", "head": {"width": 8, "rates": [1, 2]}},
            {"name": "depth", "type": "depth", "head": {"width": 8, "rates": [1, 2]}},
        ],
    },
    "data": {"name": "synthetic", "height": 32, "width": 32, "num_train": 8, "num_val": 8, "num_test": 8},
    "train": {"epochs": 2, "batch_size": 8, "device": "cpu"},
    "optimizer": {"name": "adamw", "lr": 0.01},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweepcli")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    argv = ["sweep", "-c", str(root / "tiny.yaml"), "--lambdas", "0,1", "--set", "train.epochs=1",
            "--out", str(root / "sweep")]
    assert main(argv) == 0
    return root


def test_sweep_table_then_json_reuses(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    argv = ["sweep", "-c", str(swept / "tiny.yaml"), "--lambdas", "0, 1", "--set", "train.epochs=1",
            "--out", str(swept / "sweep"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lambdas"] == [0.0, 1.0] and [r["reused"] for r in out["rows"]] == [1, 1]
    assert out["rows"][1]["group_sparsity"]["mean"] > out["rows"][0]["group_sparsity"]["mean"] == 0.0
    for name in ("summary.csv", "summary.json", "metric_vs_lambda.png", "sparsity_vs_lambda.png"):
        assert (swept / "sweep" / name).is_file(), name


def test_plot_run_and_checkpoint(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = swept / "sweep" / "lam_1" / "trial_0"
    capsys.readouterr()
    assert main(["plot", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = sorted(Path(f).name for f in out["files"])
    assert names == ["channels.png", "sparsity_epochs.png", "val_metrics.png"]
    for f in out["files"]:
        with Image.open(f) as img:
            assert img.format == "PNG" and img.size[0] >= 400 and img.size[1] >= 250
    assert out["group_sparsity"] > 0
    assert main(["plot", str(run / "best.pt"), "--out", str(swept / "p")]) == 0
    assert "channels.png" in capsys.readouterr().out and (swept / "p" / "channels.png").is_file()


@pytest.mark.parametrize(("argv", "needle"), [
    (["plot", "{root}"], "not a run folder"),
    (["plot", "{root}/sweep"], "holds a sweep"),
    (["plot", "{root}/nope.pt"], "does not exist"),
    (["sweep", "-c", "{root}/tiny.yaml", "--lambdas", "0,abc", "--out", "{root}/x"], "'abc' is not a number"),
    (["sweep", "-c", "{root}/tiny.yaml", "--lambdas", "-1", "--out", "{root}/x"], "lambdas must be"),
])
def test_errors_are_one_line(swept: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    capsys.readouterr()
    assert main([a.format(root=swept) for a in argv]) != 0
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("error:")
