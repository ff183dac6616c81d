"""Every sparsifier trained end to end on the tiny config: targets met, zeros removed by slim
exactly, thresholds that stop, exact resume, and one-line configuration errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mtlexport.errors import ConfigError
from mtlexport.reporting import NullReporter
from mtlexport.sparsity.methods import SPARSIFIERS, prepare_config
from mtlexport.train import TrainConfig, load_checkpoint, train
from tests.train.conftest import tiny_config_dict

CHANNEL_RUNS = [("group_lasso", {}), ("disparse", {}), ("disparse", {"arbiter": "majority"}),
                ("disparse", {"variant": "dynamic", "options": {"update_every": 1}}), ("adapmtl", {})]


def config(sparsifier: dict[str, Any], **sections: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config_dict(sparsifier=sparsifier, **{"train": {"epochs": 3}, **sections}))


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "sparsity.jsonl").read_text().splitlines()]


class Interrupt(NullReporter):
    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        if key == "run" and "loss" in fields:
            raise KeyboardInterrupt


def test_every_method_is_registered() -> None:
    assert SPARSIFIERS.names() == ["adapmtl", "disparse", "group_lasso"]
    assert {name for name, _ in CHANNEL_RUNS} == set(SPARSIFIERS.names())


@pytest.mark.parametrize(("name", "extra"), CHANNEL_RUNS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_channel_zeros_are_removed_by_slim_exactly(tmp_path: Path, name: str, extra: dict[str, Any]) -> None:
    from mtlexport.sparsity.coupled import trace_groups
    from mtlexport.sparsity.macs import build_macs_model
    from mtlexport.surgery import slim_checkpoint

    run = tmp_path / "run"
    result = train(config({"name": name, "structure": "channel", "target_macs": 0.5, **extra}), run)
    best = load_checkpoint(result.best_checkpoint)
    model = best.build_model()
    graph = trace_groups(model, torch.zeros(2, 3, 32, 32))
    macs = build_macs_model(model, graph[1], (3, 32, 32), list(model.parameters()))
    dead = macs.dead_channels()
    predicted = macs.ratio(dead)
    assert predicted <= 0.5 + 1e-9
    report = slim_checkpoint(result.best_checkpoint, tmp_path / "best.slim.pt")
    assert report.removed == int(macs.removed(dead).sum()) > 0
    assert report.macs_after / report.macs_before == pytest.approx(predicted, abs=0.005)  # the MACs model's accuracy
    assert records(run)[best.epoch - 1]["landed"] is True
    if name == "disparse":  # no layer collapses: every channel set keeps a unit
        state = best.extra["sparsifier"]
        sets = torch.as_tensor(state["groups"]["sets"])
        kept = torch.zeros(int(sets.max()) + 1).index_add_(0, sets, state["keep"].float())
        assert bool((kept > 0).all())


def test_disparse_element_hits_the_sparsity_within_one_weight(tmp_path: Path) -> None:
    result = train(config({"name": "disparse", "structure": "element", "target_sparsity": 0.7}), tmp_path / "run")
    state = load_checkpoint(result.best_checkpoint).state_dict
    weights = [t for k, t in state.items() if k.endswith(".weight") and t.dim() in (2, 4)]
    zero, total = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    assert abs(zero - 0.7 * total) <= 1.0


def test_adapmtl_thresholds_reach_the_target_and_stop(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = config({"name": "adapmtl", "structure": "element", "target_sparsity": 0.6}, train={"epochs": 6})
    train(cfg, run)
    recs = records(run)
    frozen = [r for r in recs if r["thresholds_frozen"]]
    assert frozen and frozen[-1]["landed"]
    names = [k for k in recs[0] if k.startswith("threshold_") and k != "threshold_pull"]
    assert len(names) == 5  # the backbone and four heads
    for k in names:  # once frozen, no threshold moves
        assert len({r[k] for r in frozen}) == 1
    assert len({recs[0][k] for k in names}) > 1  # each component learned its own threshold
    assert all(r["unit_sparsity"] >= 60.0 - 1e-9 for r in recs if r["landed"])


def test_pretrained_prunes_the_dense_checkpoint(tmp_path: Path) -> None:
    dense = train(config({}, train={"epochs": 1}), tmp_path / "dense")
    cfg = config({"name": "disparse", "structure": "element", "variant": "pretrained", "target_sparsity": 0.5,
                  "init_from": dense.best_checkpoint, "options": {"score": "magnitude"}},
                 train={"epochs": 1}, optimizer={"name": "adamw", "lr": 1e-12, "weight_decay": 0.0})
    result = train(cfg, tmp_path / "pruned")
    before = load_checkpoint(dense.best_checkpoint).state_dict["backbone.stem.0.weight"]
    after = load_checkpoint(result.best_checkpoint).state_dict["backbone.stem.0.weight"]
    kept = after != 0
    assert 0 < int(kept.sum()) < kept.numel()
    assert torch.allclose(after[kept], before[kept], atol=1e-6)


@pytest.mark.parametrize("sparsifier", [
    {"name": "disparse", "structure": "channel", "target_macs": 0.5, "variant": "dynamic",
     "options": {"update_every": 1}},
    {"name": "adapmtl", "structure": "channel", "target_macs": 0.5, "target_at": 0.9},
], ids=["disparse-dynamic", "adapmtl"])
def test_resume_is_exact(tmp_path: Path, sparsifier: dict[str, Any]) -> None:
    cfg = config(sparsifier, train={"epochs": 2}, schedule={"name": "none", "warmup_epochs": 0.0})
    train(cfg, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", reporter=Interrupt())
    assert load_checkpoint(tmp_path / "resumed" / "last.pt").epoch == 1
    train(cfg, tmp_path / "resumed", resume=True)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "resumed"))
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    sa, sb = a.extra["sparsifier"], b.extra["sparsifier"]
    assert torch.equal(sa["keep"], sb["keep"])
    if "s" in sa:
        assert torch.equal(sa["s"], sb["s"]) and sa["pull"] == sb["pull"]


def test_group_lasso_is_the_coupled_target_optimizer() -> None:
    cfg = prepare_config(config({"name": "group_lasso", "target_macs": 0.4, "target_at": 0.5}))
    opt = cfg.optimizer
    assert (opt.name, opt.grouping, opt.target_macs, opt.target_at) == ("proxadam", "coupled", 0.4, 0.5)


@pytest.mark.parametrize(("sparsifier", "optimizer", "message"), [
    ({"name": "magic", "target_macs": 0.5}, {}, "unknown sparsifier 'magic'; valid names: adapmtl, disparse, "
                                               "group_lasso"),
    ({"name": "disparse", "structure": "element", "target_macs": 0.5}, {}, "set sparsifier.target_sparsity"),
    ({"name": "disparse", "variant": "pretrained", "target_macs": 0.5}, {}, "set sparsifier.init_from"),
    ({"name": "disparse"}, {}, "needs a target"),
    ({"name": "disparse", "target_macs": 0.5}, {"name": "proxadam"}, "trains with optimizer.name: adamw"),
    ({"name": "group_lasso", "structure": "element", "target_sparsity": 0.5}, {}, "structure: channel"),
    ({"name": "adapmtl", "target_macs": 0.5, "options": {"window_size": 3}}, {}, "valid keys"),
], ids=["unknown", "element-macs", "pretrained", "no-target", "prox", "group-lasso-element", "option"])
def test_one_line_errors(tmp_path: Path, sparsifier: dict[str, Any], optimizer: dict[str, Any],
                         message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        cfg = config(sparsifier, optimizer={"name": "adamw", **optimizer})
        train(cfg, tmp_path / "run")
    assert "\n" not in str(err.value)
