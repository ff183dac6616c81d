"""The training loop end to end on a tiny config: files, checkpoints, exact resume, trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mtlexport.errors import ConfigError, OutputError
from mtlexport.models import create_model
from mtlexport.reporting import RecordingReporter
from mtlexport.tasks import build_tasks
from mtlexport.train import TrainConfig, evaluate, evaluate_checkpoint, load_checkpoint, train, train_trials
from mtlexport.train.loaders import eval_loader, open_split

from .conftest import tiny_config_dict


def config(**sections: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config_dict(**sections))


class Interrupt(RecordingReporter):
    """Raises once the first epoch has been checkpointed (the run bar advances after the save)."""

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        if key == "run" and "loss" in fields:
            raise KeyboardInterrupt


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    return train(config(train={"epochs": 3}), out), out


def test_run_writes_everything(run) -> None:
    result, out = run
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "metrics.jsonl", "sparsity.jsonl", "config.yaml"}
    records = lines(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    first = records[0]
    assert set(first) >= {"train", "val", "lr", "task_weights", "time_s", "monitor"}
    assert set(first["val"]) == {"segmentation", "depth", "normals", "attributes"}
    assert "miou" in first["val"]["segmentation"] and "loss" in first["val"]["depth"]
    assert [r["epoch"] for r in lines(out / "sparsity.jsonl")] == [1, 2, 3]
    assert result.epochs_run == 3 and 1 <= result.best_epoch <= 3
    assert result.test_metrics["segmentation"]["miou"] >= 0
    assert result.images_per_s > 0
    json.dumps(result.to_dict())
    assert load_checkpoint(out / "last.pt").extra["sparsity"]["group_sparsity"] == 0.0


def test_loss_decreases(run) -> None:
    result, _ = run
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_uncertainty_weights_are_learned(run) -> None:
    result, out = run
    weights = result.task_weights
    assert all(abs(w - 1.0) > 1e-4 for w in weights.values())
    assert len({round(w, 6) for w in weights.values()}) == len(weights)
    log_vars = load_checkpoint(out / "last.pt").extra["loss_weighting"]["log_vars"]
    assert torch.allclose(torch.exp(-log_vars), torch.tensor(list(weights.values())))


def test_checkpoint_round_trip(run) -> None:
    _, out = run
    raw = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    ckpt = load_checkpoint(out / "best.pt")
    assert raw["config"] == ckpt.config and TrainConfig.from_dict(ckpt.config).model == ckpt.spec
    model = create_model(ckpt.spec)
    model.load_state_dict(raw["state_dict"])
    cfg = TrainConfig.from_dict(ckpt.config)
    tasks = build_tasks(cfg.model)
    val = evaluate(model, tasks, eval_loader(open_split(cfg.data, "val"), 8), "cpu")
    stored = ckpt.metrics["val"]
    for task, metrics in val.items():
        for name, value in metrics.items():
            assert value == pytest.approx(stored[task][name], abs=1e-6)
    assert ckpt.metrics["test"]["depth"]["abs_err"] > 0


def test_evaluate_checkpoint_with_baselines(run) -> None:
    result, out = run
    ev = evaluate_checkpoint(out / "best.pt", split="test", device="cpu")
    assert ev.num_samples == 8
    assert ev.metrics["depth"] == pytest.approx(result.test_metrics["depth"])
    assert set(ev.baseline) == {"segmentation", "depth", "normals", "attributes"}
    assert "overall" in ev.delta_vs_baseline
    json.dumps(ev.to_dict())
    other = evaluate_checkpoint(out / "best.pt", split="val", data_overrides={"num_val": 4}, batch_size=2)
    assert other.num_samples == 4


def test_existing_run_needs_resume(run) -> None:
    _, out = run
    with pytest.raises(OutputError, match="--resume to continue it, --force to replace it"):
        train(config(), out)
    with pytest.raises(ConfigError, match="'model' section differs"):
        train(config(train={"epochs": 4}, data={"num_train": 16}, model={"name": "other"}), out, resume=True)


def _state(path: Path) -> tuple[dict, dict, dict]:
    ckpt = load_checkpoint(path)
    return ckpt.state_dict, ckpt.optimizer, ckpt.extra["loss_weighting"]


def _assert_identical(a: Path, b: Path) -> None:
    for x, y in zip(_state(a), _state(b)):
        flat_x, flat_y = _flatten(x), _flatten(y)
        assert flat_x.keys() == flat_y.keys()
        for key in flat_x:
            if isinstance(flat_x[key], torch.Tensor):
                assert torch.equal(flat_x[key], flat_y[key]), key
            else:
                assert flat_x[key] == flat_y[key], key


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in _flatten(val, f"{prefix}{i}.").items()}
    return {prefix: obj}


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    cfg = config(schedule={"name": "none", "warmup_epochs": 0.5})
    train(cfg, tmp_path / "straight")
    # interrupted after epoch 1, then resumed
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "interrupted", reporter=Interrupt())
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt").epoch == 1
    reporter = RecordingReporter()
    resumed = train(cfg, tmp_path / "interrupted", resume=True, reporter=reporter)
    assert resumed.epochs_run == 2 and any("resumed" in m for m in reporter.messages)
    # trained for 1 epoch, then extended to 2 with --resume
    one = TrainConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "epochs": 1}})
    train(one, tmp_path / "extended")
    train(cfg, tmp_path / "extended", resume=True)
    for other in ("interrupted", "extended"):
        _assert_identical(tmp_path / "straight" / "last.pt", tmp_path / other / "last.pt")
        a, b = lines(tmp_path / "straight" / "metrics.jsonl"), lines(tmp_path / other / "metrics.jsonl")
        assert [r["train"] for r in a] == [r["train"] for r in b]
        assert [r["val"] for r in a] == [r["val"] for r in b]


def test_early_stopping(tmp_path: Path) -> None:
    cfg = config(train={"epochs": 5, "patience": 1, "min_delta": 1e9, "monitor": "segmentation.miou"},
                 data={"num_train": 8})
    result = train(cfg, tmp_path)
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1
    again = train(cfg, tmp_path, resume=True)  # a finished run resumes to the same result
    assert again.epochs_run == 2 and again.best_metrics == result.best_metrics


def test_group_sparse_optimizer_reports_sparsity(tmp_path: Path) -> None:
    cfg = config(optimizer={"name": "proxadam", "lr": 0.01, "lambda": 0.5}, train={"epochs": 1},
                 data={"num_train": 8})
    result = train(cfg, tmp_path)
    record = lines(tmp_path / "sparsity.jsonl")[0]
    assert record["epoch"] == 1 and record["zero_groups"] > 0
    assert result.sparsity["group_sparsity"] == pytest.approx(record["group_sparsity"])


def test_trials(tmp_path: Path) -> None:
    cfg = config(train={"epochs": 1}, data={"num_train": 8})
    result = train_trials(cfg, tmp_path, 2)
    assert [t.seed for t in result.trials] == [0, 1]
    assert (tmp_path / "trial_0" / "best.pt").is_file() and (tmp_path / "trial_1" / "best.pt").is_file()
    assert result.split == "test"
    miou = result.summary["segmentation.miou"]
    values = [t.test_metrics["segmentation"]["miou"] for t in result.trials]
    assert miou["n"] == 2 and miou["mean"] == pytest.approx(sum(values) / 2)
    assert miou["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    json.dumps(result.to_dict())
