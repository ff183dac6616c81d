"""``mtlexport demo`` end to end on a tiny config: summary files, the table, --skip-train, errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtlexport.cli.main import main

HEAD = {"width": 8, "rates": [1, 2]}
TINY = {
    "model": {
        "backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
        "tasks": [
            {"name": "segmentation", "type": "segmentation", "head": HEAD},
            {"name": "depth", "type": "depth", "head": HEAD},
            {"name": "attributes", "type": "attributes", "head": {"width": 8, "hidden": 8}},
        ],
    },
    "data": {"name": "synthetic", "height": 32, "width": 32, "num_train": 16, "num_val": 8, "num_test": 8},
    "train": {"epochs": 5, "batch_size": 8, "device": "cpu"},
    "optimizer": {"name": "adamw", "lr": 0.01},
}
# One epoch of two steps; a strong lambda so that whole channel groups are zero after it.
FAST = ["--epochs", "1", "--lambda", "0.5", "--bench-seconds", "0.02"]
STAGES = ["train dense", "train sparse", "slim", "evaluate", "export dense", "export slim", "bench ort",
          "bench torch", "summary"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The tiny config's folder and the ``--json`` output of one full demo run."""
    root = tmp_path_factory.mktemp("demo")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    buf = io.StringIO()  # capsys is function-scoped; a module fixture captures stdout itself
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--out", str(root / "out"), "--config", str(root / "tiny.yaml"), *FAST, "--json"])
    assert rc == 0
    return root, json.loads(buf.getvalue())


def test_full_run_writes_the_summary(demo: tuple[Path, dict[str, Any]]) -> None:
    root, payload = demo
    out = root / "out"
    assert payload["options"]["epochs"] == 1 and payload["lambda"] == 0.5 and payload["options"]["threads"] == 1
    assert list(payload["stages"]) == STAGES
    assert payload["total_s"] >= sum(payload["stages"].values()) * 0.99
    for name in ("summary.md", "summary.json", "latency.png", "channels.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["table"] == payload["table"]
    for kind in ("dense", "sparse"):
        assert payload["train"][kind]["epochs_run"] == 1
        assert payload["checkpoints"][kind] == str(out / kind / "last.pt")
    assert payload["train"]["sparse"]["sparsity"]["group_sparsity"] > 0
    assert (out / "export_dense" / "model.onnx").is_file() and (out / "export_slim" / "model.onnx").is_file()


def test_slim_is_smaller_and_exact(demo: tuple[Path, dict[str, Any]]) -> None:
    _, payload = demo
    slim = payload["slim"]
    assert slim["params_after"] < slim["params_before"] and slim["macs_after"] < slim["macs_before"]
    assert slim["verification"]["passed"] and slim["removed"] > 0
    onnx = {k: v["onnx_bytes"]["model.onnx"] for k, v in payload["exports"].items()}
    assert onnx["slim"] < onnx["dense"]
    ev = payload["evaluation"]
    assert set(ev) == {"dense", "sparse", "slim"} and ev["dense"]["baseline"]
    for task, metrics in ev["sparse"]["metrics"].items():  # slimming removed only dead channels
        for name, value in metrics.items():
            assert ev["slim"]["metrics"][task][name] == pytest.approx(value, rel=1e-4, abs=1e-5)


def test_table_rows(demo: tuple[Path, dict[str, Any]]) -> None:
    root, payload = demo
    rows = {row[0]: row for row in payload["table"]["rows"]}
    assert payload["table"]["columns"] == ["", "baseline", "dense", "sparse", "slim", "slim vs dense"]
    assert "segmentation.miou ↑" in rows and "depth.abs_err ↓" in rows
    params = rows["parameters (M)"]
    assert params[4] < params[2] == params[3] and params[5].startswith("-")
    latency = [k for k in rows if k.endswith(" ms")]
    assert sorted(latency) == ["ort b1 ms", "ort b8 ms", "torch b1 ms", "torch b8 ms"]
    assert all(rows[k][5].endswith(("faster", "slower")) for k in latency)
    text = (root / "out" / "summary.md").read_text()
    assert "| parameters (M) |" in text and "| ONNX MB |" in text and "group sparsity" in text
    assert "slim verification passed" in text and "| train sparse |" in text


def test_skip_train_reuses_checkpoints_beside_the_config(demo: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = demo
    config = tmp_path / "tiny.yaml"
    shutil.copy(root / "tiny.yaml", config)
    for kind in ("dense", "sparse"):
        shutil.copy(root / "out" / kind / "last.pt", tmp_path / f"tiny_{kind}.pt")
    rc = main(["demo", "--skip-train", "--out", str(tmp_path / "out"), "--config", str(config),
               "--bench-seconds", "0.02"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "parameters (M)" in captured.out and "ort b8 ms" in captured.out and "sample checkpoints" in captured.out
    assert "copy sample checkpoints" in captured.err and "[8/8] summary" in captured.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["train"] == {} and summary["lambda"] == 0.5


def test_skip_train_without_samples_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    rc = main(["demo", "--skip-train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert err.startswith("error: ") and "tiny_dense.pt" in err and "without --skip-train" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [
    (["--lambda", "0"], "--lambda must be a positive"),
    (["--epochs", "0"], "--epochs must be a positive"),
    (["--bench-seconds", "-1"], "--duration-s must be >= 0"),
    (["--duration-s", "-1"], "--duration-s must be >= 0"),
    (["--skip-train", "--lambda", "0.1"], "apply to training"),
    (["--target-macs", "1.5"], "--target-macs must be a MACs ratio"),
    (["--lambda", "0.1", "--target-macs", "0.5"], "pass one"),
])
def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    rc = main(["demo", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("old")
    rc = main(["demo", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "is not empty" in err and "--force" in err and "\n" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_default_sparse_run_is_the_sample_recipe() -> None:
    from mtlexport.demo import DEFAULT_TARGET, DemoOptions, _configs

    configs = _configs(DemoOptions())
    sparse, dense = configs["sparse"].optimizer, configs["dense"].optimizer
    assert sparse.name == "proxadam" and sparse.grouping == "coupled" and sparse.target_macs == DEFAULT_TARGET
    assert dense.name == "adamw" and dense.target_macs is None
    fixed = _configs(DemoOptions(lam=0.01, target_macs=None))["sparse"].optimizer
    assert fixed.lam == 0.01 and fixed.target_macs is None


def test_resume_reuses_finished_trainings_and_redoes_the_rest(demo: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root, first = demo
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    (out / "summary.md").unlink()  # as if the demo had been interrupted before its summary
    stamps = {kind: (out / kind / "last.pt").stat().st_mtime_ns for kind in ("dense", "sparse")}
    rc = main(["demo", "--out", str(out), "--config", str(root / "tiny.yaml"), *FAST, "--resume", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    assert (out / "summary.md").is_file() and payload["options"]["resume"] is True
    for kind in ("dense", "sparse"):  # finished runs were reused, not trained again
        assert (out / kind / "last.pt").stat().st_mtime_ns == stamps[kind]
        assert payload["train"][kind]["epochs_run"] == first["train"][kind]["epochs_run"]
    assert "resumed" in captured.err
    rc = main(["demo", "--out", str(out), "--resume", "--force"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "pass one of them" in err and "\n" not in err
