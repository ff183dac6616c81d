"""The sparsity controller: a MACs target reached and held, frozen groups, exact resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mtlexport.errors import ConfigError
from mtlexport.reporting import RecordingReporter
from mtlexport.sparsity import ProxAdam, split_param_groups
from mtlexport.surgery import slim_checkpoint
from mtlexport.train import TrainConfig, load_checkpoint, train

from ..train.conftest import tiny_config_dict
from .conftest import TinyMultiTask, multitask_loss


def _config(**optimizer: Any) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config_dict(
        train={"epochs": 4, "batch_size": 8},
        data={"num_train": 32, "num_val": 8, "num_test": 8},
        optimizer={"name": "proxadam", "lr": 0.01, **optimizer},
        schedule={"name": "cosine", "warmup_epochs": 0.5},
    ))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("grouping", ["coupled", "channel"])
@pytest.mark.parametrize("target", [0.7, 0.4])
def test_macs_target_is_reached_and_held(tmp_path: Path, grouping: str, target: float) -> None:
    result = train(_config(grouping=grouping, target_macs=target), tmp_path)
    records = _lines(tmp_path / "sparsity.jsonl")
    assert all("lambda" in r and "macs_ratio" in r for r in records)
    landed = [r for r in records if r["landed"]]
    assert landed and landed[-1]["epoch"] == 4
    # Held: the ratio does not move after the landing, and lambda is 0 from there on.
    assert len({round(r["macs_ratio"], 9) for r in landed}) == 1 and all(r["lambda"] == 0 for r in landed)
    assert load_checkpoint(result.best_checkpoint).epoch in {r["epoch"] for r in landed}
    report = slim_checkpoint(tmp_path / "last.pt", tmp_path / "last.slim.pt")
    ratio = report.macs_after / report.macs_before
    assert abs(ratio - target) <= 0.03, ratio
    assert ratio == pytest.approx(landed[-1]["macs_ratio"], abs=0.005)


def test_unreachable_target_is_refused_with_the_minimum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be reached.*keeps at least 0\.\d+"):
        train(_config(grouping="coupled", target_macs=0.01), tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_target_needs_a_proximal_optimizer_and_one_target() -> None:
    with pytest.raises(ConfigError, match="proxadam"):
        TrainConfig.from_dict(tiny_config_dict(optimizer={"name": "adamw", "target_macs": 0.5}))
    with pytest.raises(ConfigError, match="at most one"):
        _config(target_macs=0.5, target_group_sparsity=0.5)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        _config(target_macs=1.5)


def test_group_sparsity_target(tmp_path: Path) -> None:
    train(_config(grouping="channel", target_group_sparsity=0.3), tmp_path)
    last = _lines(tmp_path / "sparsity.jsonl")[-1]
    assert last["lasso_group_sparsity"] == pytest.approx(30.0, abs=1.0)


def test_frozen_groups_stay_exactly_zero() -> None:
    torch.manual_seed(0)
    model = TinyMultiTask()
    opt = ProxAdam(split_param_groups(model), lr=1e-2, lam=3e-3)
    gen = torch.Generator().manual_seed(0)

    def steps(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            multitask_loss(model(torch.randn(4, 3, 8, 8, generator=gen))).backward()
            opt.step()

    steps(10)
    lasso = [g for g in opt.param_groups if g["group_lasso"]]
    zero = [opt.zero_groups(g).clone() for g in lasso]
    total = sum(int(z.sum()) for z in zero)
    assert 0 < total < sum(z.numel() for z in zero)
    assert opt.freeze_zero_groups() == total
    for group in opt.param_groups:
        group["lam"] = 0.0  # no shrinkage at all: only the freeze keeps them at zero
    steps(10)
    for group, z in zip(lasso, zero):
        assert torch.equal(opt.zero_groups(group), z)  # frozen groups exactly zero, no other group zero
    conv = model.backbone.stem.weight  # in_channel layout: group c is the slice [:, c]
    dead = (conv.detach() == 0).flatten(2).all(-1).all(0)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.count_nonzero(opt.state[conv][key][:, dead]) == 0


class Interrupt(RecordingReporter):
    """Raises once the second epoch has been checkpointed."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs = 0

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        if key == "run" and "loss" in fields:
            self.epochs += 1
            if self.epochs == 2:
                raise KeyboardInterrupt


def test_resume_with_coupled_groups_and_a_target_is_exact(tmp_path: Path) -> None:
    cfg = _config(grouping="coupled", target_macs=0.5, target_at=0.6)
    train(cfg, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", reporter=Interrupt())
    assert load_checkpoint(tmp_path / "resumed" / "last.pt").epoch == 2
    train(cfg, tmp_path / "resumed", resume=True)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert a.extra["controller"] == b.extra["controller"]
    sa, sb = a.extra["group_structure"], b.extra["group_structure"]
    assert sa["names"] == sb["names"] and all(torch.equal(x, y) for x, y in zip(sa["ids"], sb["ids"]))
    assert _lines(tmp_path / "straight" / "sparsity.jsonl") == _lines(tmp_path / "resumed" / "sparsity.jsonl")
