"""``mtlexport train`` / ``eval`` / ``inspect`` end to end on a tiny config, with --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtlexport.cli.main import main

TINY = {
    "model": {
        "backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
        "tasks": [
            {"name": "segmentation", "type": "segmentation", "head": {"width": 8, "rates": [1, 2]}},
            {"name": "depth", "type": "depth", "head": {"width": 8, "rates": [1, 2]}},
            {"name": "attributes", "type": "attributes", "head": {"width": 8, "hidden": 8}},
        ],
    },
    "data": {"name": "synthetic", "height": 32, "width": 32, "num_train": 8, "num_val": 8, "num_test": 8},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(root / "tiny.yaml"), "--out", str(root / "run"), "--json"]) == 0
    return root


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_train_json(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, ["train", "--config", str(trained / "tiny.yaml"), "--out", str(trained / "run2"),
                            "--set", "train.epochs=2", "--set", "loss_weighting.name=fixed", "--json"])
    assert out["epochs_run"] == 2 and Path(out["best_checkpoint"]).is_file()
    assert out["task_weights"] == {"segmentation": 1.0, "depth": 1.0, "attributes": 1.0}
    assert set(out["test_metrics"]) == {"segmentation", "depth", "attributes"}


def test_train_resume_and_table(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["train", "--config", str(trained / "tiny.yaml"), "--out", str(trained / "run"), "--resume"]) == 0
    text = capsys.readouterr().out
    assert "segmentation.miou" in text and "best:" in text


def test_trials_json(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, ["train", "-c", str(trained / "tiny.yaml"), "-o", str(trained / "trials"),
                            "--trials", "2", "--json"])
    assert out["split"] == "test" and len(out["trials"]) == 2
    assert out["summary"]["depth.abs_err"]["n"] == 2


def test_eval_json_and_table(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(trained / "run" / "best.pt")
    out = run_json(capsys, ["eval", ckpt, "--json", "--device", "cpu", "--batch-size", "4"])
    assert out["split"] == "test" and out["num_samples"] == 8
    assert set(out["metrics"]) == set(out["baseline"]) == {"segmentation", "depth", "attributes"}
    out = run_json(capsys, ["eval", ckpt, "--split", "val", "--data", "num_val=4", "--json"])
    assert out["num_samples"] == 4
    capsys.readouterr()
    assert main(["eval", ckpt]) == 0
    assert "baseline" in capsys.readouterr().out


def test_inspect_json_and_table(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(trained / "run" / "best.pt")
    out = run_json(capsys, ["inspect", ckpt, "--json"])
    assert out["backbone"]["name"] == "resnet18" and out["output_stride"] == 8
    assert out["macs"] > 0 and out["input_shape"] == [3, 32, 32]
    assert [t["name"] for t in out["tasks"]] == ["segmentation", "depth", "attributes"]
    assert out["params"] == sum(out["params_by_part"].values())
    stem = out["layers"][0]
    assert stem["name"] == "backbone.stem.0" and stem["kernel"] == [7, 7] and stem["stride"] == [2, 2]
    assert out["sparsity"]["num_groups"] > 0
    capsys.readouterr()
    assert main(["inspect", ckpt, "--no-layers"]) == 0
    assert "MACs" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["train", "--config", "does/not/exist.yaml", "--out", "x"],
    ["eval", "does/not/exist.pt"],
    ["inspect", "does/not/exist.pt"],
])
def test_bad_paths_give_one_line(argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main([a if a != "x" else str(tmp_path / "x") for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error:") and "\n" not in err


def test_bad_config_value(trained: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["train", "-c", str(trained / "tiny.yaml"), "-o", str(tmp_path / "r"), "--set", "optimizer.lr=-1"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == "error: optimizer.lr must be a positive number, got -1"
