"""Training never damages or loses work: everything is validated before the run folder is
touched, a second writer is refused, a kill mid-commit is repaired by --resume, and broken
checkpoints (mismatched or non-finite weights) are named precisely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from mtlexport.errors import CheckpointError, ConfigError, DataError, OutputError
from mtlexport.io import FolderLock
from mtlexport.train import TrainConfig, evaluate_checkpoint, load_checkpoint, train
from mtlexport.train.checkpoint import Checkpoint, save_checkpoint
from mtlexport.train.config import resolve_config
from tests.data.conftest import write_nyuv2

from .conftest import tiny_config_dict

RUN_FILES = {"last.pt", "best.pt", "metrics.jsonl", "sparsity.jsonl", "config.yaml"}


def config(**sections: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config_dict(**sections))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _checkpoint(path: Path, cfg: TrainConfig | None = None) -> Checkpoint:
    """An untrained checkpoint of the tiny config (instant), written to ``path``."""
    resolved = resolve_config(cfg or config())
    from mtlexport.models import create_model

    model = create_model(resolved.model)
    ckpt = Checkpoint(spec=resolved.model, state_dict=model.state_dict(), config=resolved.to_dict())
    save_checkpoint(path, ckpt)
    return load_checkpoint(path)


# ----------------------------------------------------------------------------- up-front checks
def test_image_size_must_divide_by_the_output_stride() -> None:
    with pytest.raises(ConfigError, match=r"data.height 40 is not divisible by the backbone's output stride 16.*32 or 48"):
        config(data={"height": 40}, model={**tiny_config_dict()["model"],
                                           "backbone": {"name": "resnet18", "base_width": 4, "output_stride": 16}})


def test_zero_input_channels_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.in_channels must be a positive integer, got 0"):
        config(model={**tiny_config_dict()["model"], "in_channels": 0})


def test_out_naming_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("a file")
    with pytest.raises(OutputError, match="run is a file; give a folder"):
        train(config(), tmp_path / "run")


def test_nothing_is_written_into_an_existing_run_before_every_split_is_valid(tmp_path: Path) -> None:
    root = write_nyuv2(tmp_path / "nyuv2")
    head = {"width": 8, "rates": [1, 2]}
    cfg = TrainConfig.from_dict({
        "model": {"backbone": {"name": "resnet18", "base_width": 4},
                  "tasks": [{"name": "depth", "type": "depth", "head": head}]},
        "data": {"name": "nyuv2", "root": str(root), "height": 16, "width": 16},
        "train": {"epochs": 1, "batch_size": 2, "device": "cpu"},
    })
    out = tmp_path / "run"
    train(cfg, out)
    before = _snapshot(out)
    (root / "gt_sets" / "test.txt").unlink()
    with pytest.raises(DataError, match=r"the test split: missing file .*test.txt"):
        train(cfg, out, force=True)  # would replace the run, but the test split is missing
    with pytest.raises(DataError):
        train(cfg, out, resume=True)
    assert _snapshot(out) == before


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with FolderLock(out, "another 'mtlexport train'"):
        with pytest.raises(OutputError, match=rf"in use by another 'mtlexport train' \(pid {os.getpid()}\)"):
            train(config(train={"epochs": 1}), out)
    assert not (out / "last.pt").exists()


def test_force_replaces_a_run_and_resume_excludes_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(train={"epochs": 2}), out)
    with pytest.raises(OutputError, match="--force to replace it"):
        train(config(train={"epochs": 1}), out)
    with pytest.raises(ConfigError, match="pass one of them"):
        train(config(), out, resume=True, force=True)
    result = train(config(train={"epochs": 1}), out, force=True)
    assert result.epochs_run == 1 and [r["epoch"] for r in _lines(out / "metrics.jsonl")] == [1]
    assert {p.name for p in out.iterdir()} == RUN_FILES


# ----------------------------------------------------------------------------- kill -9 mid-commit
KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from mtlexport.io import atomic_path
    from mtlexport.train import TrainConfig, loop
    real = loop.save_checkpoint
    def save(path, ckpt):
        if path.name == "best.pt" and ckpt.epoch == int(sys.argv[3]):
            with atomic_path(path) as tmp:  # die half-way through writing best.pt
                tmp.write_bytes(b"partial")
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, ckpt)
    loop.save_checkpoint = save
    loop.train(TrainConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2])
""")


def test_kill_during_the_best_write_is_repaired_by_resume(tmp_path: Path) -> None:
    raw = tiny_config_dict(train={"epochs": 3}, data={"num_train": 8})
    out, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.run([sys.executable, "-c", KILLER, json.dumps(raw), str(out), "1"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr[-400:]
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()
    assert any(p.name.endswith(".tmp") for p in out.iterdir())  # what the kill left
    assert not (out / "metrics.jsonl").exists() or _lines(out / "metrics.jsonl") == []

    cfg = TrainConfig.from_dict(raw)
    resumed = train(cfg, out, resume=True)
    reference = train(cfg, straight)
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no temp file, no lock file
    for name in ("metrics.jsonl", "sparsity.jsonl"):
        epochs = [r["epoch"] for r in _lines(out / name)]
        assert epochs == [1, 2, 3], (name, epochs)
    got, want = _lines(out / "metrics.jsonl"), _lines(straight / "metrics.jsonl")
    assert [r["train"] for r in got] == [r["train"] for r in want]  # the resumed run is the same run
    best = load_checkpoint(out / "best.pt")
    assert best.epoch == resumed.best_epoch == reference.best_epoch
    assert load_checkpoint(out / "last.pt").extra["best"]["epoch"] == best.epoch


def test_a_log_line_cut_short_is_dropped_and_restored(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(train={"epochs": 2})
    train(cfg, out)
    text = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(text[0] + "\n" + text[1][: len(text[1]) // 2])  # killed mid-append
    (out / ".last.pt.abcd.tmp").write_bytes(b"stale")
    train(replace(cfg, train=replace(cfg.train, epochs=3)), out, resume=True)
    assert [r["epoch"] for r in _lines(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / ".last.pt.abcd.tmp").exists()


# ----------------------------------------------------------------------------- broken checkpoints
def test_mismatched_weights_name_the_keys_and_shapes(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "a.pt")
    state = dict(ckpt.state_dict)
    state.pop("backbone.stem.0.weight")
    state["heads.depth.extra.weight"] = torch.zeros(2, 2)
    key = "backbone.stem.1.weight"
    state[key] = torch.zeros(3)
    save_checkpoint(tmp_path / "bad.pt", replace(ckpt, state_dict=state))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "bad.pt").build_model()
    text = str(info.value)
    assert "\n" not in text and len(text) - len(str(tmp_path)) < 250, text
    assert "1 missing: backbone.stem.0.weight [4, 3, 7, 7]" in text
    assert "1 unexpected: heads.depth.extra.weight [2, 2]" in text
    assert f"{key} is [3], the spec needs [4]" in text


def test_non_finite_weights_are_named_before_any_data_work(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "a.pt")
    state = dict(ckpt.state_dict)
    state["backbone.layer1.0.conv1.weight"] = state["backbone.layer1.0.conv1.weight"].clone()
    state["backbone.layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    state["backbone.layer1.0.conv1.weight"][0, 0, 0, 1] = float("inf")
    save_checkpoint(tmp_path / "nan.pt", replace(ckpt, state_dict=state))
    with pytest.raises(CheckpointError) as info:
        evaluate_checkpoint(tmp_path / "nan.pt", data_overrides={"root": "/does/not/matter"})
    text = str(info.value)
    assert "backbone.layer1.0.conv1.weight holds 1 NaN and 1 Inf value(s)" in text
    assert len(text) - len(str(tmp_path)) < 250
    load_checkpoint(tmp_path / "nan.pt").build_model(check_finite=False)  # inspection can still opt out
